"""Where the CPU time goes: XLA's matrix products at the shapes jconv's lowerings make.

jconv's CPU lowerings turn a convolution into matrix products: 'winograd' one
(N*tiles, C) x (C, O) product per transformed position, 'taps' one
(N*mh*mw, C) x (C, O) per kernel tap, 'banded' one (N*mh*blocks, kh*Win*C) x
(kh*Win*C, block*O). How fast XLA's CPU backend runs a product of each shape,
against torch.matmul (MKL, with AVX-512 and, in bfloat16, AMX where the CPU has
them) and against the machine's float32 peak, says how much of a lowering's time
is arithmetic and how much is everything else (transforms, copies, layout).

    python experiments/cpu_gemm.py                       # the bench suite's layers
    python experiments/cpu_gemm.py --layers lesson resnet56 --dtypes float32

Timing as in bench_conv.py: compiled first, calls queued, median of repeats,
both libraries interleaved in one process. torch's threads: --torch-threads
(on a shared machine its OpenMP threads wait at barriers; 1 is the fair choice
there, with XLA_FLAGS='--xla_cpu_multi_thread_eigen=false' for XLA's side).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import statistics
import sys
import time
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from experiments.bench_conv import ALL_LAYERS, DTYPES, Layer, cpu_model, layer_spec
from jconv._method_banded import _geometry
from jconv._method_winograd import TILE, winograd_supported


class Gemm(NamedTuple):
    """One of a lowering's matrix products: (m, k) x (k, n), `count` of them per call."""

    lowering: str
    m: int
    k: int
    n: int
    count: int


def lowering_gemms(layer: Layer, batch: int) -> list[Gemm]:
    """The forward products of 'winograd' (where it applies), 'taps' and 'banded'."""
    x = jax.ShapeDtypeStruct((batch, *layer.in_hw, layer.c), jnp.float32)
    w = jax.ShapeDtypeStruct(layer.kernel_shape("NHWC"), jnp.float32)
    spec = layer_spec(layer, x, w, "NHWC")
    (mh, mw), cg = spec.out_hw, spec.cg
    gemms = [Gemm("taps", spec.n * mh * mw, cg, spec.og, spec.kh * spec.kw * spec.groups)]
    if winograd_supported(spec):
        tiles = spec.n * -(-mh // TILE) * -(-mw // TILE)
        positions = (TILE + spec.kh - 1) * (TILE + spec.kw - 1)
        gemms.append(Gemm("winograd", tiles, spec.c, spec.o, positions))
    geo = _geometry(spec)
    gemms.append(
        Gemm("banded", spec.n * mh * geo.blocks, spec.kh * geo.in_width * spec.c,
             geo.block * spec.o, 1)
    )  # fmt: skip
    return gemms


def _median_seconds(fn, sync, repeats: int, target_s: float) -> float:
    sync(fn())
    start = time.perf_counter()
    sync(fn())
    calls = max(1, min(200, round(target_s / max(time.perf_counter() - start, 1e-6))))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = None
        for _ in range(calls):
            out = fn()
        sync(out)
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def time_gemm(g: Gemm, dtype_name: str, repeats: int, target_s: float, torch_threads: int | None):
    """Seconds per product: XLA's jnp.dot (accumulating in float32) and torch.matmul."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((g.m, g.k), np.float32)
    b = rng.standard_normal((g.k, g.n), np.float32)
    dtype = DTYPES[dtype_name]
    ja, jb = jnp.asarray(a, dtype), jnp.asarray(b, dtype)
    dot = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
    dot_f32 = jax.jit(
        lambda a, b: jnp.dot(a.astype(jnp.float32), b.astype(jnp.float32)).astype(dtype)
    )
    out = {"xla": _median_seconds(lambda: dot(ja, jb), jax.block_until_ready, repeats, target_s)}
    if dtype_name != "float32":  # the same product with its operands converted to float32
        out["xla_in_f32"] = _median_seconds(
            lambda: dot_f32(ja, jb), jax.block_until_ready, repeats, target_s
        )
    try:
        import torch
    except ImportError:
        return out
    if torch_threads:
        torch.set_num_threads(torch_threads)
    tdt = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype_name]
    ta, tb = torch.from_numpy(a).to(tdt), torch.from_numpy(b).to(tdt)
    out["torch"] = _median_seconds(lambda: ta @ tb, lambda _: None, repeats, target_s)
    return out


@dataclasses.dataclass
class GemmConfig:
    layers: Sequence[str] = ("lesson", "resnet56", "resnet28", "resnet14", "resnet7",
                             "conv1x1", "lenet1", "lenet2", "stride2")  # fmt: skip
    dtypes: Sequence[str] = ("float32", "bfloat16")
    repeats: int = 5
    target_s: float = 0.05
    torch_threads: int | None = None
    out: str | None = "runs/cpu_gemm"
    quiet: bool = False


def run(config: GemmConfig) -> dict:
    rows = []
    for name in config.layers:
        layer = ALL_LAYERS[name]
        for g in lowering_gemms(layer, layer.batch_cpu):
            for dtype_name in config.dtypes:
                seconds = time_gemm(
                    g, dtype_name, config.repeats, config.target_s, config.torch_threads
                )
                flops = 2 * g.m * g.k * g.n
                row = {"layer": name, "dtype": dtype_name, **g._asdict()}
                row.update({f"{lib}_gflops": flops / s / 1e9 for lib, s in seconds.items()})
                row["ms_per_call"] = {lib: 1e3 * s * g.count for lib, s in seconds.items()}
                rows.append(row)
                if not config.quiet:
                    rates = "  ".join(f"{lib} {flops / s / 1e9:7.1f}" for lib, s in seconds.items())
                    print(
                        f"{name:<9} {g.lowering:<9} {dtype_name:<9} "
                        f"({g.m:>6} x {g.k:>4}) x ({g.k:>4} x {g.n:>4}) x{g.count:<3} "
                        f"GFLOP/s: {rates}",
                        flush=True,
                    )
    model, flags = cpu_model()
    result = {"cpu_model": model, "cpu_flags": flags, "jax": jax.__version__, "rows": rows}
    if config.out:
        path = pathlib.Path(config.out)
        path.mkdir(parents=True, exist_ok=True)
        (path / "gemm.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    d = GemmConfig()
    p.add_argument("--layers", nargs="+", default=list(d.layers), choices=list(ALL_LAYERS))
    p.add_argument("--dtypes", nargs="+", default=list(d.dtypes), choices=list(DTYPES))
    p.add_argument("--repeats", type=int, default=d.repeats)
    p.add_argument("--target-s", type=float, default=d.target_s)
    p.add_argument("--torch-threads", type=int, default=None)
    p.add_argument("--out", default=d.out)
    run(GemmConfig(**vars(p.parse_args(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
