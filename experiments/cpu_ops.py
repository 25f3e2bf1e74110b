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

import argparse
import collections
import dataclasses
import glob
import os
import re
import resource
import sys
import tempfile
import time
from collections.abc import Sequence

import jax

from experiments.bench_conv import (
    ALL_LAYERS,
    DIRECTIONS,
    DTYPES,
    environment,
    layer_arrays,
    make_step,
)


@dataclasses.dataclass
class OpsConfig:
    layers: Sequence[str] = ("resnet28",)
    methods: Sequence[str] = ("auto", "xla")
    directions: Sequence[str] = DIRECTIONS
    dtype: str = "float32"
    layout: str = "NHWC"
    batch: int | None = None  # None: the layer's CPU batch size
    calls: int = 20
    top: int = 8  # operations listed per row, the longest first
    by_kind: bool = False  # sum ynn_fusion.1, ynn_fusion.2, ... as one ynn_fusion
    quiet: bool = False


def op_events(trace_dir: str) -> list[tuple[str, int]]:
    """(hlo_op, duration_ns) of every XLA operation the CPU ran in a jax.profiler trace."""
    [path] = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)
    data = jax.profiler.ProfileData.from_file(path)
    events = []
    for plane in data.planes:
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
    for name in config.layers:
        if name not in ALL_LAYERS:
            raise ValueError(f"unknown layer {name!r}; choose from {list(ALL_LAYERS)}")
    if config.dtype not in DTYPES:
        raise ValueError(f"unknown dtype {config.dtype!r}; choose from {list(DTYPES)}")
    rows = []
    for name in config.layers:
        for direction in config.directions:
            for method in config.methods:
                row = profile_case(name, direction, method, config)
                rows.append(row)
                if not config.quiet:
                    print(format_row(row, config.top), flush=True)
    return {"environment": environment(), "rows": rows}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    d = OpsConfig()
    p.add_argument("--layers", nargs="+", default=list(d.layers), choices=list(ALL_LAYERS))
    p.add_argument("--methods", nargs="+", default=list(d.methods))
    p.add_argument("--directions", nargs="+", default=list(d.directions), choices=DIRECTIONS)
    p.add_argument("--dtype", default=d.dtype, choices=list(DTYPES))
    p.add_argument("--layout", default=d.layout, choices=["NCHW", "NHWC"])
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--calls", type=int, default=d.calls)
    p.add_argument("--top", type=int, default=d.top)
    p.add_argument("--by-kind", action="store_true", help="sum the operations by kind")
    run(OpsConfig(**vars(p.parse_args(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
