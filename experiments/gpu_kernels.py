"""Where a GPU's time goes: each kernel of bench_conv's steps, from a jax.profiler trace.

For each layer, direction and method, bench_conv's step (the forward conv, or its
value and both gradients) runs `calls` times inside one trace, and the kernels the
GPU ran are summed by name: which kernels a lowering launches (jconv's Triton
kernels, cuDNN's, XLA's fusions and transposes) and how long each takes per call,
beside the busy total that bench_conv reports. This is what showed that the
host's clock measured the host on the small layers, and where 'pallas' loses to
cuDNN (BENCHMARKS.md, "Session 6").

    python -m experiments.gpu_kernels --layers resnet14 resnet7 --methods pallas xla

Run it as a module from the repository root (it imports experiments.bench_conv).
Off a GPU the trace has no GPU timeline: every row says so (kernels: None).

With --no-trace the steps run `calls` times without JAX's profiler, for a profiler
from outside that reads the GPU's counters (Nsight Compute; both would claim CUPTI):
experiments/gpu_ncu_forward.sh.
"""

from __future__ import annotations

import collections
import dataclasses
import sys
from collections.abc import Sequence

import jax

from experiments._cases import CaseConfig, case_parser, run_cases
from experiments.bench_conv import ALL_LAYERS, DTYPES, device_bursts, layer_arrays, make_step


@dataclasses.dataclass
class KernelsConfig(CaseConfig):
    """CaseConfig for a GPU: batch None is the layer's GPU batch; `top` kernels a row."""

    methods: Sequence[str] = ("pallas", "xla")
    dtype: str = "bfloat16"
    trace: bool = True  # False: run the calls untraced, for an outside profiler


def profile_case(layer_name: str, direction: str, method: str, config: KernelsConfig) -> dict:
    """One step's kernels: name -> (microseconds per call, launches per call), longest first."""
    layer = ALL_LAYERS[layer_name]
    batch = config.batch or layer.batch_gpu
    x, w, ct = layer_arrays(layer, batch, DTYPES[config.dtype], config.layout, jax.random.key(0))
    step = make_step(layer, config.layout, method, direction).lower(x, w, ct).compile()
    row = {"layer": layer_name, "direction": direction, "method": method, "batch": batch}
    if not config.trace:
        jax.block_until_ready(step(x, w, ct))  # the warm-up: the profiler may skip it
        for _ in range(config.calls):
            out = step(x, w, ct)
        jax.block_until_ready(out)
        return {**row, "busy_us": None, "kernels": None, "traced": False}
    runs = device_bursts({method: lambda: step(x, w, ct)}, calls=config.calls)
    if runs is None:
        return {**row, "busy_us": None, "kernels": None}
    [events] = runs[method]
    time_ns: collections.Counter[str] = collections.Counter()
    count: collections.Counter[str] = collections.Counter()
    for event in events:
        time_ns[event.name] += event.duration_ns
        count[event.name] += 1
    kernels = [
        (name, ns / config.calls / 1e3, count[name] / config.calls)
        for name, ns in time_ns.most_common()
    ]
    return {**row, "busy_us": sum(time_ns.values()) / config.calls / 1e3, "kernels": kernels}


def format_row(row: dict, top: int) -> str:
    head = f"{row['layer']:<10} {row['direction']:<8} {row['method']:<8}"
    if row.get("traced") is False:
        return f"{head} ran untraced (batch {row['batch']}), for an outside profiler"
    if row["kernels"] is None:
        return f"{head} no GPU timeline in the trace"
    lines = [f"{head} {row['busy_us']:9.1f} us of kernels per call"]
    for name, us, launches in row["kernels"][:top]:
        lines.append(f"    {us:9.1f} us  x{launches:g}  {name[:70]}")
    return "\n".join(lines)


def run(config: KernelsConfig) -> dict:
    """Profile every (layer, direction, method) asked for; returns {'environment', 'rows'}."""
    return run_cases(config, profile_case, format_row)


def main(argv: Sequence[str] | None = None) -> int:
    p = case_parser(__doc__.split("\n\n")[0], KernelsConfig())
    p.add_argument("--no-trace", dest="trace", action="store_false", help="run untraced, for ncu")
    run(KernelsConfig(**vars(p.parse_args(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
