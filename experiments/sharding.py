"""What each sharding strategy communicates, found in the compiled program, and how long it takes.

    JAX_NUM_CPU_DEVICES=8 python experiments/sharding.py       # 8 simulated CPU devices
    python experiments/sharding.py --n 64 --c 256 --o 256 --hw 56 --out results/sharding  # GPU

For each strategy of jconv.sharding.sharded_conv2d ('batch', 'out_channels',
'in_channels', 'spatial') and for the two-convolution block
(jconv.sharding.sharded_conv_pair: out_channels then in_channels, one collective), this
compiles the forward pass and the forward-plus-backward pass, reads the
collectives out of the compiled HLO (kind, count, bytes each device sends), and
puts them next to jconv.sharding.sharded_conv2d_comm_bytes, the cost model; then it times
both passes against the unsharded jconv.conv2d on one device. On simulated CPU
devices (JAX_NUM_CPU_DEVICES) the times are labelled 'simulated': the devices
share the host's cores, so they show overheads, not speedups.

`run(config)` does the work and returns the table, so that it can be imported
and tested; `main(argv)` only parses flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jconv

PAIR = "pair"  # the two-convolution block
CASES = (*jconv.sharding.STRATEGIES, PAIR)


@dataclasses.dataclass(frozen=True)
class ShardingConfig:
    """A 'SAME' convolution of x (n, c, hw, hw) with a kernel (o, c, k, k), over `devices`."""

    n: int = 8  # the defaults suit a small CPU; raise them on accelerators
    c: int = 32
    o: int = 32
    hw: int = 32
    k: int = 3
    dtype: str = "float32"
    layout: str = "NCHW"
    cases: tuple[str, ...] = CASES
    devices: int | None = None  # default: every device
    platform: str | None = None  # whose devices: 'cpu', 'gpu', 'tpu'; None: JAX's default
    repeats: int = 5  # timed batches; the median is reported
    calls: int = 2  # calls queued before each block_until_ready
    out: str | None = None  # a directory for sharding.json


def _inputs(config: ShardingConfig) -> dict[str, np.ndarray]:
    """Fresh random inputs (NCHW/OIHW, transposed for NHWC)."""
    rng = np.random.default_rng(0)
    dtype = jnp.dtype(config.dtype)
    c, o, k = config.c, config.o, config.k

    def normal(*shape):
        return rng.standard_normal(shape, np.float32).astype(dtype)

    x = normal(config.n, c, config.hw, config.hw)
    kernel, kernel2 = normal(o, c, k, k), normal(o, o, k, k)
    if config.layout == "NHWC":
        x = x.transpose(0, 2, 3, 1)
        kernel, kernel2 = kernel.transpose(2, 3, 1, 0), kernel2.transpose(2, 3, 1, 0)
    return {"x": x, "kernel": kernel, "bias": normal(o), "kernel2": kernel2, "bias2": normal(o)}


def _conv_kwargs(config: ShardingConfig) -> dict[str, Any]:
    return {"padding": "SAME", "layout": config.layout}


def _functions(case: str, mesh, config: ShardingConfig) -> tuple[Callable, tuple[str, ...]]:
    """The function a case runs, and the names of its inputs."""
    kw = _conv_kwargs(config)
    if case == PAIR:
        f = functools.partial(
            jconv.sharding.sharded_conv_pair, mesh=mesh, activation=jax.nn.relu, **kw
        )
        return f, ("x", "kernel", "kernel2", "bias", "bias2")
    if case == "unsharded":
        return functools.partial(jconv.conv2d, **kw), ("x", "kernel", "bias")
    f = functools.partial(jconv.sharding.sharded_conv2d, mesh=mesh, strategy=case, **kw)
    return f, ("x", "kernel", "bias")


def model_bytes(case: str, config: ShardingConfig, devices: int) -> jconv.sharding.CommBytes:
    """The cost model's bytes per device; the pair is out_channels then in_channels."""
    inputs = _inputs_shapes(config)
    kw = dict(_conv_kwargs(config), devices=devices, bias=True, dtype=config.dtype)
    if case != PAIR:
        return jconv.sharding.sharded_conv2d_comm_bytes(
            inputs["x"], inputs["kernel"], strategy=case, **kw
        )
    first = jconv.sharding.sharded_conv2d_comm_bytes(
        inputs["x"], inputs["kernel"], strategy="out_channels", **kw
    )
    h_shape = inputs["x"][:1] + (
        (config.o, config.hw, config.hw)
        if config.layout == "NCHW"
        else (config.hw, config.hw, config.o)
    )
    second = jconv.sharding.sharded_conv2d_comm_bytes(
        h_shape, inputs["kernel2"], strategy="in_channels", **kw
    )
    return jconv.sharding.CommBytes(
        first.forward + second.forward, first.backward + second.backward
    )


def _inputs_shapes(config: ShardingConfig) -> dict[str, tuple[int, ...]]:
    n, c, o, hw, k = config.n, config.c, config.o, config.hw, config.k
    if config.layout == "NCHW":
        return {"x": (n, c, hw, hw), "kernel": (o, c, k, k), "kernel2": (o, o, k, k)}
    return {"x": (n, hw, hw, c), "kernel": (k, k, c, o), "kernel2": (k, k, o, o)}


def compiled_collectives(compiled) -> tuple[dict[str, int], int]:
    """({kind: count}, bytes each device sends) of a compiled program."""
    found = jconv.sharding.collectives_in_hlo(compiled.as_text())
    counts: dict[str, int] = {}
    for c in found:
        counts[c.kind] = counts.get(c.kind, 0) + 1
    return counts, sum(c.bytes_sent for c in found)


def wall_time(fn: Callable, args: Sequence[Any], repeats: int, calls: int) -> float:
    """Median seconds per call: `calls` calls queued before each block, after a warm-up."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready([fn(*args) for _ in range(calls)])
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def measure(case: str, mesh, config: ShardingConfig, inputs: dict[str, np.ndarray]) -> dict:
    """One row: collectives and bytes found vs modelled, and the wall times."""
    f, names = _functions(case, mesh, config)
    args = [jnp.asarray(inputs[k]) for k in names]
    cotangent = jnp.asarray(
        np.random.default_rng(1).standard_normal(jax.eval_shape(f, *args).shape, np.float32)
    )

    def forward_backward(*a):
        # the output as the forward pass makes it, and the gradients of <output, cotangent>
        y, vjp = jax.vjp(f, *a)
        return y, vjp(cotangent.astype(y.dtype))

    forward = jax.jit(f).lower(*args).compile()
    both = jax.jit(forward_backward).lower(*args).compile()
    fwd_counts, fwd_bytes = compiled_collectives(forward)
    all_counts, all_bytes = compiled_collectives(both)
    row: dict[str, Any] = {"case": case}
    if case != "unsharded":
        model = model_bytes(case, config, mesh.devices.size)
        row |= {
            "forward_collectives": fwd_counts,
            "forward_bytes_found": fwd_bytes,
            "forward_bytes_model": model.forward,
            # XLA may combine the two passes' all-reduces into one: the whole program's count
            "forward_backward_collectives": all_counts,
            "backward_bytes_found": all_bytes - fwd_bytes,
            "backward_bytes_model": model.backward,
        }
    row["forward_ms"] = 1e3 * wall_time(forward, args, config.repeats, config.calls)
    row["forward_backward_ms"] = 1e3 * wall_time(both, args, config.repeats, config.calls)
    return row


def device_label(devices: Sequence[Any]) -> str:
    kind = devices[0].device_kind
    simulated = devices[0].platform == "cpu" and len(devices) > 1
    return f"{len(devices)} x {kind}" + (
        " (simulated: CPU devices sharing the host)" if simulated else ""
    )


def run(config: ShardingConfig) -> dict[str, Any]:
    """Measure every case of `config`; returns {'meta': ..., 'rows': [...]} and prints a table."""
    unknown = sorted(set(config.cases) - set(CASES))
    if unknown:
        raise ValueError(f"unknown case(s) {unknown}: cases are {CASES}")
    devices = jax.devices(config.platform)
    devices = devices[: config.devices or len(devices)]
    mesh = jax.make_mesh((len(devices),), ("d",), devices=devices)
    inputs = _inputs(config)
    with jax.default_device(devices[0]):
        rows = [measure("unsharded", mesh, config, inputs)]
    rows += [measure(case, mesh, config, inputs) for case in config.cases]
    meta = {
        "devices": device_label(devices),
        "jax": jax.__version__,
        "date": datetime.date.today().isoformat(),
        "config": dataclasses.asdict(config),
    }
    result = {"meta": meta, "rows": rows}
    print(format_table(result))
    if config.out:
        out = Path(config.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "sharding.json").write_text(json.dumps(result, indent=1))
    return result


def _kib(b: int | None) -> str:
    return "-" if b is None else f"{b / 1024:.1f}"


def _kinds(counts: dict[str, int] | None) -> str:
    if counts is None:
        return "-"
    return ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "none"


def format_table(result: dict[str, Any]) -> str:
    meta, rows = result["meta"], result["rows"]
    c = meta["config"]
    head = (
        f"conv {c['n']}x{c['c']}x{c['hw']}x{c['hw']} -> {c['o']} channels, {c['k']}x{c['k']} "
        f"'SAME', {c['dtype']}, {c['layout']}, on {meta['devices']}, jax {meta['jax']}\n"
        "bytes: KiB each device sends, found in the compiled HLO / cost model "
        "(backward: the forward+backward program's less the forward's)\n"
    )
    cols = f"{'case':<13}{'forward collectives':<26}{'fwd found/model':>17}  "
    cols += f"{'fwd+bwd collectives':<30}{'bwd found/model':>19}{'fwd ms':>9}{'f+b ms':>9}"
    lines = [head + cols]
    for r in rows:
        lines.append(
            f"{r['case']:<13}{_kinds(r.get('forward_collectives')):<26}"
            f"{_kib(r.get('forward_bytes_found')):>8}/{_kib(r.get('forward_bytes_model')):<8}  "
            f"{_kinds(r.get('forward_backward_collectives')):<30}"
            f"{_kib(r.get('backward_bytes_found')):>9}/{_kib(r.get('backward_bytes_model')):<9}"
            f"{r['forward_ms']:>9.2f}{r['forward_backward_ms']:>9.2f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    d = ShardingConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in ("n", "c", "o", "hw", "k", "repeats", "calls", "devices"):
        p.add_argument(f"--{name}", type=int, default=getattr(d, name))
    p.add_argument("--dtype", default=d.dtype, choices=["float32", "bfloat16", "float16"])
    p.add_argument("--layout", default=d.layout, choices=["NCHW", "NHWC"])
    p.add_argument("--cases", nargs="+", default=list(d.cases), choices=list(CASES))
    p.add_argument("--out", default=d.out, help="directory for sharding.json")
    p.add_argument("--platform", default=d.platform, help="whose devices (cpu on a GPU machine)")
    args = p.parse_args(argv)
    return run(ShardingConfig(**{**vars(args), "cases": tuple(args.cases)}))


if __name__ == "__main__":
    main()
