"""Tune method='pallas' on a GPU: time candidate block settings per bench layer, keep the best.

For each layer of experiments/bench_conv.py's suite (at its GPU batch size),
each dtype and each of the three kernels (the forward pass 'y', the input
gradient 'x', the kernel gradient 'w'), this compiles and times a short list of
candidate BlockConfigs, the default first, and keeps the fastest. It writes:

- table.json: the winners keyed by problem class, in exactly the format of
  jconv/_pallas_tuning.py's TABLE (`table_from_json` reads it), so that one run
  on a lent GPU can be committed as the new table;
- tune.json: every candidate's time, and the environment;

and prints one line per (layer, dtype, kernel): the default's time, the best
one's, and the best setting. Timing is bench_conv's: on a GPU the kernels' own
time from a profiler trace (`bench_conv.device_seconds`: the host's dispatch of
a call costs about as long as a small layer's kernel runs), median over
`repeats` runs of 10 calls; elsewhere (interpret mode) the host's clock around
enough queued calls for about `target_s`. A candidate that fails to compile (too
much shared memory, say), or whose result differs from the default settings' by
more than rounding, is recorded and skipped. Candidates compile `--workers` at a time
(threads: a GPU machine's cores compile while its GPU waits). No new candidate is started once
`budget_s` has passed (default 420 s, so that a run ends within the 8 minutes a
lent H100 allows; classes not reached keep the default settings), and the
layers are tuned in the order given, so put the important ones first.

    python -m experiments.tune_pallas --out runs/tune_pallas                 # on a GPU
    python -m experiments.tune_pallas --grid small --dtypes bfloat16 --budget-s 150
    python -m experiments.tune_pallas --interpret --layers lenet2 --batch 1 --grid tiny

Run it as a module from the repository root, as above: `experiments` is a package
(this script imports experiments.bench_conv), and the root holds jconv.

With --interpret (any machine) the kernels run in Pallas's interpret mode:
only a check that the script works, its times mean nothing.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import functools
import json
import pathlib
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax

from experiments.bench_conv import (
    DTYPES,
    LAYERS,
    Layer,
    device_seconds,
    environment,
    time_batch,
)
from jconv import _pallas_triton
from jconv._checks import check_conv_args
from jconv._pallas_geometry import ConvGeometry
from jconv._pallas_tuning import (
    MIN_DOT,
    BlockConfig,
    config_for,
    default_config,
    depthwise_tap_config,
    max_split_k,
    problem_class,
    table_to_json,
)

PRODUCTS = ("y", "x", "w")
# (block_m, block_n, block_k, num_warps, num_stages); for 'w' also a split_k factor
# applied to the default's split. Clamped to each problem's sizes, duplicates dropped.
PIXEL_GRIDS = {
    "full": [
        (128, 128, 64, 8, 3),
        (128, 128, 32, 4, 4),
        (128, 64, 64, 4, 3),
        (64, 128, 64, 4, 3),
        (64, 64, 64, 4, 4),
        (256, 128, 32, 8, 3),
        (128, 256, 32, 8, 3),
        (64, 64, 32, 4, 2),
        (256, 128, 64, 8, 3),
        (128, 256, 64, 8, 3),
        (128, 128, 16, 4, 4),
        (128, 128, 64, 8, 4),
        (128, 256, 64, 8, 4),
        (256, 128, 64, 8, 4),
        (128, 128, 128, 8, 3),
    ],
    "small": [(128, 128, 64, 8, 3), (128, 64, 64, 4, 3), (64, 128, 64, 4, 3), (64, 64, 32, 4, 4)],
    "tiny": [(16, 16, 16, 4, 2)],
}
# Depthwise problems run elementwise kernels: (pixels per block, channels per block,
# num_warps, split_k factor for 'w'); pixels are block_m for 'y' and 'x', block_k for 'w'.
DEPTHWISE_GRIDS = {
    "full": [
        (64, 128, 4, 1),
        (128, 128, 8, 1),
        (32, 128, 4, 2),
        (64, 64, 4, 1),
        (128, 64, 4, 2),
        (256, 128, 8, 1),
        (512, 128, 8, 0.5),
        (256, 64, 4, 1),
    ],
    "small": [(64, 128, 4, 1), (128, 128, 8, 1), (32, 128, 4, 2)],
    "tiny": [(16, 16, 4, 2)],
}
# Depthwise kernel gradients with every tap in one program (BlockConfig.flat): (pixels per
# block, channels per block, num_warps, split_k factor); 'full' grid only, kernels of at
# most 16 taps (an accumulator per tap).
DEPTHWISE_ALL_TAPS = [(16, 64, 4, 2), (16, 128, 4, 2), (32, 64, 4, 2), (16, 64, 8, 1)]
W_GRIDS = {
    "full": [
        (128, 128, 64, 8, 3, 1),
        (64, 64, 64, 4, 3, 1),
        (128, 64, 32, 4, 3, 1),
        (64, 128, 32, 4, 4, 1),
        (128, 128, 64, 8, 3, 2),
        (64, 64, 64, 4, 3, 2),
        (128, 128, 32, 8, 4, 0.5),
        (64, 64, 32, 4, 3, 0.5),
        (128, 256, 64, 8, 3, 1),
        (64, 128, 64, 4, 3, 1),
        (128, 64, 64, 4, 3, 1),
        (128, 128, 64, 8, 4, 4),
        (64, 128, 128, 4, 3, 1),
        (128, 128, 128, 8, 3, 1),
    ],
    "small": [(128, 128, 64, 8, 3, 1), (64, 64, 64, 4, 3, 1), (64, 64, 64, 4, 3, 2)],
    "tiny": [(16, 16, 16, 4, 2, 2)],
}
# Depthwise 'y' and 'x' at stride 1 rolling down the rows (BlockConfig.rows): (output rows
# per program, columns per block, channels per block, num_warps, num_stages).
ROWS_GRIDS = {
    "full": [
        (14, 64, 64, 8, 2),
        (8, 64, 64, 4, 2),
        (28, 64, 32, 4, 2),
        (16, 64, 128, 8, 2),
        (7, 64, 64, 4, 2),
        (14, 32, 128, 8, 2),
    ],
    "small": [(14, 64, 64, 8, 2), (8, 64, 64, 4, 2)],
    "tiny": [(2, 16, 16, 4, 2)],
}
# The same for depthwise kernel gradients: (rows of dy per program, columns per block,
# channels per block, num_warps); one accumulator per tap and a window of kh rows of dy.
ROWS_W_GRIDS = {
    "full": [(14, 64, 32, 8), (8, 64, 32, 8), (28, 64, 16, 4), (14, 64, 16, 4), (56, 64, 32, 8)],
    "small": [(14, 64, 32, 8)],
    "tiny": [(2, 16, 16, 4)],
}
# Kernel gradients whose splits add in place, in turn (BlockConfig.serial): not bounded by
# max_split_k. (block_m, block_n, block_k, num_warps, num_stages, programs): split_k is
# what makes about that many programs, at most one block of pixels each.
SERIAL_W_GRIDS = {
    "full": [
        (128, 128, 64, 8, 3, 264),
        (128, 128, 64, 8, 4, 528),
        (128, 256, 64, 8, 3, 264),
        (64, 128, 64, 4, 3, 528),
        (128, 128, 64, 8, 3, 132),
    ],
    "small": [(128, 128, 64, 8, 3, 264), (128, 256, 64, 8, 3, 264)],
    "tiny": [(16, 16, 16, 4, 2, 16)],
}
# Kernel gradients with several taps per program (BlockConfig.tap_group), each block of
# dy loaded once for all of them: (block_m, block_n, block_k, num_warps, num_stages,
# programs, tap_group, serial); split_k is what makes about that many programs, within
# max_split_k unless serial. Tried before the other grids: they are the newest. Dropped
# after the H200 (session 10): 32-row tiles (195 us on resnet14 against 52) and all nine
# taps of a 3x3 per program (202 us; with 3 stages past the 227 KiB of shared memory).
TAP_GROUP_W_GRIDS = {
    "full": [
        (64, 64, 64, 4, 3, 264, 3, False),
        (64, 128, 64, 8, 3, 264, 3, False),
        (128, 64, 64, 8, 3, 264, 3, False),
        (64, 64, 32, 4, 4, 528, 3, False),
        (64, 128, 64, 8, 3, 264, 3, True),
        (64, 64, 64, 4, 3, 528, 3, True),
        (128, 128, 64, 8, 3, 264, 3, True),
    ],
    "small": [(64, 64, 64, 4, 3, 264, 3, False), (64, 128, 64, 8, 3, 264, 3, True)],
    "tiny": [(16, 16, 16, 4, 2, 16, 3, True)],
}
# The same for depthwise kernel gradients: (pixels per block, channels per block,
# num_warps, programs, every tap in one program).
SERIAL_DEPTHWISE_GRIDS = {
    "full": [(64, 128, 4, 528, False), (16, 64, 4, 264, True), (32, 64, 4, 528, True)],
    "small": [(64, 128, 4, 528, False)],
    "tiny": [(16, 16, 4, 4, True)],
}


@dataclasses.dataclass
class TuneConfig:
    layers: Sequence[str] = tuple(LAYERS)
    dtypes: Sequence[str] = ("bfloat16", "float32")
    products: Sequence[str] = PRODUCTS
    grid: str = "full"
    batch: int | None = None  # None: each layer's GPU batch size
    repeats: int = 5
    target_s: float = 0.05
    budget_s: float = 420.0  # no new candidate is started after this many seconds
    serial: bool = True  # also try kernel gradients whose splits add in place, in turn
    workers: int = 8  # candidates compiled side by side (threads)
    interpret: bool = False
    out: str | None = "runs/tune_pallas"
    quiet: bool = False


def layer_geometry(layer: Layer, batch: int) -> ConvGeometry:
    """The layer as the kernels see it: NHWC, padding resolved to zero amounts."""
    spec = check_conv_args(
        (batch, layer.hw, layer.hw, layer.c),
        (layer.k, layer.k, layer.c // layer.groups, layer.o),
        layout="NHWC",
        **layer.conv_kwargs,
    )
    return ConvGeometry(
        batch, layer.hw, layer.hw, layer.c, layer.o, layer.k, layer.k,
        layer.groups, spec.stride, spec.dilation, spec.pads,
    )  # fmt: skip


def _pow2_at_most(limit: int, value: int) -> int:
    """value, halved until it is no larger than the power of two at or above limit."""
    cap = max(MIN_DOT, 1 << max(limit - 1, 0).bit_length())
    while value > cap and value > MIN_DOT:
        value //= 2
    return value


def _serial_splits(geo: ConvGeometry, tiles: int, block_k: int, programs: int) -> int:
    """The splits that make about `programs` programs of `tiles` tiles, each split at
    least one block of block_k output pixels."""
    mh, mw = geo.out_hw
    return max(1, min(-(-programs // tiles), -(-geo.n * mh * mw // block_k)))


def candidates(product: str, geo: ConvGeometry, dtype: Any, grid: str) -> list[BlockConfig]:
    """The default first, then jconv's table's setting for the problem's class (so that a
    run on a short grid never ends with a worse winner than the table holds), then the
    grid's settings fitted to this problem, without repeats.

    Kernel-gradient splits stay within max_split_k (their memory), but for those
    that add in place (serial), which hold no partial sums. Where blocks of
    channels would be partly padding (a contraction of, say, 100 channels in blocks
    of 64 runs 128), the 'full' grid also tries the flattened (tap, channel) contraction.
    """
    base = default_config(product, geo, dtype)
    most_splits = max_split_k(geo, dtype)

    def splits(factor: float, start: BlockConfig = base) -> int:
        return max(1, min(most_splits, round(start.split_k * factor)))

    out = [base]
    tabled = config_for(product, geo, dtype)
    if tabled not in out:
        out.append(tabled)
    if geo.depthwise:
        # the kernels that do not roll down the rows start from their own default
        blocks = depthwise_tap_config(geo, dtype) if product == "w" else base
        for pixels, bn, warps, split in DEPTHWISE_GRIDS[grid]:
            config = dataclasses.replace(
                blocks,
                block_n=_pow2_at_most(geo.c, bn),
                num_warps=warps,
                **(
                    dict(block_k=pixels, split_k=splits(split, blocks))
                    if product == "w"
                    else dict(block_m=pixels)
                ),
            )
            if config not in out:
                out.append(config)
            if product != "w" and grid == "full":  # and with the taps unrolled
                config = dataclasses.replace(config, flat=True)
                if config not in out:
                    out.append(config)
        if product == "w" and grid == "full" and geo.kh * geo.kw <= 16:
            for pixels, bn, warps, split in DEPTHWISE_ALL_TAPS:
                config = dataclasses.replace(
                    blocks,
                    block_k=pixels,
                    block_n=_pow2_at_most(geo.c, bn),
                    num_warps=warps,
                    split_k=splits(split, blocks),
                    flat=True,
                )
                if config not in out:
                    out.append(config)
        if product == "w" and geo.rollable:
            for rows, bm, bn, warps in ROWS_W_GRIDS[grid]:
                config = dataclasses.replace(
                    base,
                    block_m=_pow2_at_most(geo.out_hw[1], bm),
                    block_n=_pow2_at_most(geo.c, bn),
                    num_warps=warps,
                    split_k=1,
                    rows=rows,
                )
                if config not in out:
                    out.append(config)
        if product != "w" and geo.rollable:
            out_w = geo.out_hw[1] if product == "y" else geo.width
            for rows, bm, bn, warps, stages in ROWS_GRIDS[grid]:
                config = dataclasses.replace(
                    base,
                    block_m=_pow2_at_most(out_w, bm),
                    block_n=_pow2_at_most(geo.c, bn),
                    num_warps=warps,
                    num_stages=stages,
                    rows=rows,
                )
                if config not in out:
                    out.append(config)
        if product == "w":
            for pixels, bn, warps, programs, flat in SERIAL_DEPTHWISE_GRIDS[grid]:
                block_n = _pow2_at_most(geo.c, bn)
                tiles = (1 if flat else geo.kh * geo.kw) * -(-geo.c // block_n)
                config = dataclasses.replace(
                    blocks,
                    block_k=pixels,
                    block_n=block_n,
                    num_warps=warps,
                    split_k=_serial_splits(geo, tiles, pixels, programs),
                    flat=flat,
                    serial=True,
                )
                if config not in out:
                    out.append(config)
        return out
    if product == "w":
        rows = geo.kh * geo.kw * geo.cg if base.flat else geo.cg
        taps = geo.kh * geo.kw

        def by_programs(bm, bn, bk, warps, stages, programs, group, serial) -> BlockConfig:
            """A kernel-gradient setting whose splits make about `programs` programs
            (partial sums within max_split_k; serial splits, which hold none, beyond)."""
            block_m, block_n = _pow2_at_most(rows, bm), _pow2_at_most(geo.og, bn)
            tap_blocks = 1 if base.flat else -(-taps // group)
            tiles = tap_blocks * -(-rows // block_m) * -(-geo.og // block_n) * geo.groups
            split = _serial_splits(geo, tiles, bk, programs)
            return dataclasses.replace(
                base,
                block_m=block_m,
                block_n=block_n,
                block_k=bk,
                num_warps=warps,
                num_stages=stages,
                split_k=split if serial else min(split, most_splits),
                serial=serial,
                tap_group=group,
            )

        for bm, bn, bk, warps, stages, programs, group, serial in TAP_GROUP_W_GRIDS[grid]:
            if base.flat or taps == 1:
                break
            config = by_programs(bm, bn, bk, warps, stages, programs, min(group, taps), serial)
            if config not in out:
                out.append(config)
        for bm, bn, bk, warps, stages, split in W_GRIDS[grid]:
            config = dataclasses.replace(
                base,
                block_m=_pow2_at_most(rows, bm),
                block_n=_pow2_at_most(geo.og, bn),
                block_k=bk,
                num_warps=warps,
                num_stages=stages,
                split_k=splits(split),
                tap_group=1,
            )
            if config not in out:
                out.append(config)
        for bm, bn, bk, warps, stages, programs in SERIAL_W_GRIDS[grid]:
            config = by_programs(bm, bn, bk, warps, stages, programs, 1, True)
            if config not in out:
                out.append(config)
        return out
    k, cols = (geo.cg, geo.og) if product == "y" else (geo.og, geo.cg)
    flats = [base.flat]
    if grid == "full" and not base.flat and geo.kh * geo.kw > 1 and k % 64 and k % 64 < 48:
        flats.append(True)  # blocks of 64 channels would be a quarter padding or more
    for flat in flats:
        contraction = geo.kh * geo.kw * k if flat else k
        for bm, bn, bk, warps, stages in PIXEL_GRIDS[grid]:
            config = dataclasses.replace(
                base,
                block_m=bm,
                block_n=_pow2_at_most(cols, bn),
                block_k=_pow2_at_most(contraction, bk),
                num_warps=warps,
                num_stages=stages,
                flat=flat,
            )
            if config not in out:
                out.append(config)
    return out


def product_fn(product: str, geo: ConvGeometry, dtype: Any, config: BlockConfig, interpret: bool):
    """A jitted (a, b) -> the product, run with exactly this config."""
    kw = dict(config=config, out_dtype=dtype, interpret=interpret)
    if product == "y":
        return jax.jit(lambda x, w: _pallas_triton.forward(x, w, None, geo, **kw))
    if product == "x":
        return jax.jit(lambda dy, w: _pallas_triton.input_grad(dy, w, geo, **kw))
    return jax.jit(lambda x, dy: _pallas_triton.kernel_grad(x, dy, geo, **kw))


def operands(product: str, geo: ConvGeometry, dtype: Any, key: jax.Array) -> tuple:
    kx, kw, ky = jax.random.split(key, 3)
    x = jax.random.normal(kx, geo.x_shape(), dtype)
    w = jax.random.normal(kw, geo.w_shape(), dtype)
    dy = jax.random.normal(ky, geo.y_shape(), dtype)
    return {"y": (x, w), "x": (dy, w), "w": (x, dy)}[product]


def time_config(call: Callable[[], Any], repeats: int, target_s: float) -> float:
    """Median seconds per call by the host's clock, after a warm-up (off a GPU)."""
    per_call = min(time_batch(call, 1), time_batch(call, 1))
    calls = max(1, min(200, round(target_s / max(per_call, 1e-6))))
    return statistics.median(time_batch(call, calls) for _ in range(repeats))


def _error(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"


AGREEMENT = {"bfloat16": 2e-2, "float16": 2e-2}  # else 5e-3: float32 dots may run as tf32


def _drop_disagreeing(compiled: dict[int, Callable], results: list[dict], dtype_name: str) -> None:
    """Run each compiled candidate once; drop (as an error) any whose result differs from
    the first one's (the default settings') by more than rounding: a setting the kernels
    index wrongly must not win on speed.

    The bound is on max |difference| / max |first|; settings differ only in the order of
    their float32 sums, so honest differences are rounding (an output ulp or two).
    """
    first = None
    for i in list(compiled):
        try:
            out = jax.device_get(compiled[i]()).astype("float32")
        except Exception as e:  # a setting that fails at run time: recorded, skipped
            results[i]["error"] = _error(e)
            del compiled[i]
            continue
        if first is None:
            first = out
            continue
        scale = max(float(abs(first).max()), 1e-30)
        diff = float(abs(out - first).max()) / scale
        results[i]["diff_from_default"] = diff
        if not diff <= AGREEMENT.get(dtype_name, 5e-3):
            results[i]["error"] = f"result differs from the first setting's by {diff:.2e}"
            del compiled[i]


def tune_one(
    layer: Layer, dtype_name: str, product: str, config: TuneConfig, deadline: float, key
) -> dict:
    """Time every candidate of one (layer, dtype, kernel) until the deadline; the best wins."""
    dtype = DTYPES[dtype_name]
    batch = config.batch or layer.batch_gpu
    geo = layer_geometry(layer, batch)
    args = operands(product, geo, dtype, key)
    cands = candidates(product, geo, dtype, config.grid)
    if not config.serial:
        cands = [c for c in cands if not c.serial]
    results, compiled = _compile_candidates(product, geo, dtype, cands, args, config, deadline)
    _drop_disagreeing(compiled, results, dtype_name)  # also drops those that fail to run
    device = None
    if not config.interpret and compiled:
        device = device_seconds(compiled, calls=10, repeats=config.repeats)
    for i, call in compiled.items():
        row = results[i]
        row["timer"] = "device" if device else "host clock"
        seconds = (
            statistics.median(device[i])
            if device
            else time_config(call, config.repeats, config.target_s)
        )
        row["ms"] = 1e3 * seconds
        row["tflops"] = geo.flops() / seconds / 1e12
    timed = [r for r in results if "ms" in r]
    best = min(timed, key=lambda r: r["ms"]) if timed else None
    default = results[0] if results and "ms" in results[0] else None
    return {
        "layer": layer.name,
        "dtype": dtype_name,
        "product": product,
        "batch": batch,
        "class": problem_class(product, geo, dtype),
        "default_ms": default and default["ms"],
        "best_ms": best and best["ms"],
        "best_tflops": best and best["tflops"],
        "best": best and best["config"],
        "candidates": results,
    }


def _compile_candidates(
    product: str,
    geo: ConvGeometry,
    dtype: Any,
    cands: list[BlockConfig],
    args: tuple,
    config: TuneConfig,
    deadline: float,
) -> tuple[list[dict], dict[int, Callable]]:
    """Lower and compile the candidates, config.workers at a time: ([one row per candidate
    started], {its index: a call of the compiled product}).

    A GPU run spends most of its device time compiling (Triton and XLA, about a second a
    candidate on the H200), on one of the machine's 16 cores unless the candidates
    compile side by side. A batch is started only before the deadline (the first always).
    A setting that does not compile is recorded with its error and skipped.
    """
    results: list[dict] = []
    compiled: dict[int, Callable] = {}

    def compile_one(cand: BlockConfig) -> Callable:
        fn = product_fn(product, geo, dtype, cand, config.interpret)
        return functools.partial(fn.lower(*args).compile(), *args)

    workers = max(1, config.workers)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for start in range(0, len(cands), workers):
            if results and time.perf_counter() > deadline:
                break
            batch = cands[start : start + workers]
            futures = [pool.submit(compile_one, cand) for cand in batch]
            for i, (cand, future) in enumerate(zip(batch, futures), start):
                row: dict[str, Any] = {"config": dataclasses.asdict(cand)}
                try:
                    compiled[i] = future.result()
                except Exception as e:  # a setting that does not compile: recorded, skipped
                    row["error"] = _error(e)
                results.append(row)
    return results, compiled


def format_row(r: dict) -> str:
    if r["best"] is None:
        return f"{r['layer']:<10} {r['dtype']:<9} {r['product']:<2} every candidate failed"
    b = r["best"]
    setting = (
        f"m{b['block_m']} n{b['block_n']} k{b['block_k']} w{b['num_warps']} s{b['num_stages']}"
        + (f" split{b['split_k']}" if r["product"] == "w" else "")
        + (" flat" if b["flat"] else "")
        + (" serial" if b.get("serial") else "")
        + (f" taps{b['tap_group']}" if b.get("tap_group", 1) > 1 else "")
        + (f" rows{b['rows']}" if b.get("rows") else "")
    )
    default = "     -" if r["default_ms"] is None else f"{r['default_ms']:8.3f}"
    return (
        f"{r['layer']:<10} {r['dtype']:<9} {r['product']:<2} default {default} ms  "
        f"best {r['best_ms']:8.3f} ms {r['best_tflops']:7.1f} TF/s  {setting}"
    )


def run(config: TuneConfig) -> dict:
    """Tune every (layer, dtype, kernel) asked for; returns {'environment', 'rows', 'table'}."""
    for name in config.layers:
        if name not in LAYERS:
            raise ValueError(f"unknown layer {name!r}; choose from {list(LAYERS)}")
    if config.grid not in PIXEL_GRIDS:
        raise ValueError(f"unknown grid {config.grid!r}; choose from {list(PIXEL_GRIDS)}")
    deadline = time.perf_counter() + config.budget_s
    key = jax.random.key(0)
    rows: list[dict] = []
    result = {"environment": environment(), "config": dataclasses.asdict(config), "rows": rows}
    for name in config.layers:
        for dtype_name in config.dtypes:
            for product in config.products:
                key, sub = jax.random.split(key)
                row = tune_one(LAYERS[name], dtype_name, product, config, deadline, sub)
                rows.append(row)
                if not config.quiet:
                    print(format_row(row), flush=True)
                _write(result, config.out)  # after every row: a run cut short keeps its winners
    return result


def winners(rows: list[dict]) -> dict[str, BlockConfig]:
    """The fastest setting of every problem class timed, as TABLE holds them."""
    return {r["class"]: BlockConfig(**r["best"]) for r in rows if r["best"] is not None}


def _write(result: dict, out: str | None) -> None:
    table = winners(result["rows"])
    result["table"] = json.loads(table_to_json(table))
    if out:
        path = pathlib.Path(out)
        path.mkdir(parents=True, exist_ok=True)
        (path / "table.json").write_text(table_to_json(table))
        (path / "tune.json").write_text(json.dumps(result, indent=1))


def parser() -> argparse.ArgumentParser:
    """The command line: a flag for every TuneConfig field."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    d = TuneConfig()
    p.add_argument("--layers", nargs="+", default=list(d.layers), choices=list(LAYERS))
    p.add_argument("--dtypes", nargs="+", default=list(d.dtypes), choices=list(DTYPES))
    p.add_argument("--products", nargs="+", default=list(d.products), choices=PRODUCTS)
    p.add_argument("--grid", default=d.grid, choices=list(PIXEL_GRIDS))
    p.add_argument("--batch", type=int, default=None, help="override every layer's batch size")
    p.add_argument("--repeats", type=int, default=d.repeats)
    p.add_argument("--budget-s", type=float, default=d.budget_s)
    p.add_argument(
        "--target-s", type=float, default=d.target_s, help="seconds per timed batch off a GPU"
    )
    p.add_argument(
        "--no-serial", dest="serial", action="store_false", help="no serial split-K candidates"
    )
    p.add_argument(
        "--workers", type=int, default=d.workers, help="candidates compiled side by side"
    )
    p.add_argument("--interpret", action="store_true", help="interpret mode (no GPU needed)")
    p.add_argument("--out", default=d.out)
    p.add_argument("--quiet", action="store_true", help="no line per tuned kernel")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    result = run(TuneConfig(**vars(args)))
    print(f"{len(result['table'])} winners -> {args.out}/table.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
