"""Where a CPU's time goes: the XLA operations of bench_conv's steps, from a jax.profiler trace.

For each layer, direction and method, bench_conv's step (the forward conv, or its value
and both gradients) runs `calls` times inside one trace, and the operations XLA's CPU
runtime executed (its fusions, YNNPACK's and Eigen's matrix products, copies: the trace
events that carry an `hlo_op`) are summed by name. Beside them, per call: the wall time,
the compiled program's temporaries (XLA's memory analysis) and the minor page faults.
The operations of a call can run on both cores at once, so their sum may exceed the wall
time. This is what found, in session 12, a float32 copy of the output gradient taking
half of the band's bfloat16 input gradient, and programs paying for their temporaries'
fresh pages on every call (BENCHMARKS.md; README.md, "Speed on a CPU").

    JAX_NUM_CPU_DEVICES=1 python -m experiments.cpu_ops --layers dcgan --methods auto xla

Run it as a module from the repository root (it imports experiments.bench_conv).
`--by-kind` sums the operations by kind (the name without XLA's numeric suffix:
every `ynn_fusion.N` as one row), which says what kind of work dominates.
"""

from __future__ import annotations

import collections
import dataclasses
import re
import resource
import sys
import tempfile
import time
from collections.abc import Sequence

import jax

from experiments._cases import CaseConfig, case_parser, run_cases
from experiments.bench_conv import ALL_LAYERS, DTYPES, layer_arrays, make_step, trace_planes


@dataclasses.dataclass
class OpsConfig(CaseConfig):
    """CaseConfig for a CPU: batch None is the layer's CPU batch; `top` operations a row."""

    layers: Sequence[str] = ("resnet28",)
    top: int = 8
    by_kind: bool = False  # sum ynn_fusion.1, ynn_fusion.2, ... as one ynn_fusion


def op_events(trace_dir: str) -> list[tuple[str, int]]:
    """(hlo_op, duration_ns) of every XLA operation the CPU ran in a jax.profiler trace."""
    events = []
    for plane in trace_planes(trace_dir):
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            for event in line.events:
                op = dict(event.stats).get("hlo_op")  # (name, value) pairs
                if op is not None:
                    events.append((str(op), int(event.duration_ns)))
    return events


def kind_of(op: str) -> str:
    """An operation's kind: its name without XLA's numeric suffix (ynn_fusion.3 -> ynn_fusion)."""
    return re.sub(r"\.\d+$", "", op)


def profile_case(layer_name: str, direction: str, method: str, config: OpsConfig) -> dict:
    """One step: wall ms, temporaries, faults and operations (name, us per call, runs per call)."""
    layer = ALL_LAYERS[layer_name]
    batch = config.batch or layer.batch_cpu
    x, w, ct = layer_arrays(layer, batch, DTYPES[config.dtype], config.layout, jax.random.key(0))
    step = make_step(layer, config.layout, method, direction).lower(x, w, ct).compile()
    jax.block_until_ready(step(x, w, ct))
    faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    for _ in range(config.calls):
        out = step(x, w, ct)
    jax.block_until_ready(out)
    wall_ms = (time.perf_counter() - start) / config.calls * 1e3
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before) / config.calls
    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir)
        try:
            for _ in range(config.calls):
                out = step(x, w, ct)
            jax.block_until_ready(out)
        finally:
            jax.profiler.stop_trace()
        events = op_events(trace_dir)
    time_ns: collections.Counter[str] = collections.Counter()
    count: collections.Counter[str] = collections.Counter()
    for op, ns in events:
        name = kind_of(op) if config.by_kind else op
        time_ns[name] += ns
        count[name] += 1
    ops = [
        (name, ns / config.calls / 1e3, count[name] / config.calls)
        for name, ns in time_ns.most_common()
    ]
    memory = step.memory_analysis()
    return {
        "layer": layer_name,
        "direction": direction,
        "method": method,
        "batch": batch,
        "wall_ms": wall_ms,
        "ops_ms": sum(time_ns.values()) / config.calls / 1e6,
        "temp_mib": None if memory is None else memory.temp_size_in_bytes / 2**20,
        "faults": faults,
        "ops": ops,
    }


def format_row(row: dict, top: int) -> str:
    temp = "" if row["temp_mib"] is None else f", temporaries {row['temp_mib']:.1f} MiB"
    lines = [
        f"{row['layer']:<10} {row['direction']:<8} {row['method']:<8} {row['wall_ms']:8.2f} ms "
        f"a call ({row['ops_ms']:.2f} ms of operations{temp}, {row['faults']:.0f} page faults)"
    ]
    for name, us, runs in row["ops"][:top]:
        lines.append(f"    {us / 1e3:8.3f} ms  x{runs:g}  {name[:70]}")
    return "\n".join(lines)


def run(config: OpsConfig) -> dict:
    """Profile every (layer, direction, method) asked for; returns {'environment', 'rows'}."""
    return run_cases(config, profile_case, format_row)


def main(argv: Sequence[str] | None = None) -> int:
    p = case_parser(__doc__.split("\n\n")[0], OpsConfig())
    p.add_argument("--by-kind", action="store_true", help="sum the operations by kind")
    run(OpsConfig(**vars(p.parse_args(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
