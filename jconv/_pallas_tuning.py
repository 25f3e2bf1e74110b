"""Block sizes and launch settings of method='pallas', per problem class: one table, one default.

Every kernel launch is described by a `BlockConfig`. `config_for` looks the
problem's class up in `TABLE` and falls back to `default_config`, a rule of
thumb from the problem's sizes, for classes the table has not seen. The table
holds only settings measured on a card: experiments/tune_pallas.py times a
grid of candidates for each layer of the bench suite and writes the winners as
JSON in exactly this table's format (`table_to_json` / `table_from_json`), so
that one run on a lent GPU can be committed as the new table. Nothing in this
module depends on the backend that runs the kernels.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from jconv._pallas_geometry import ConvGeometry, PixelProblem

SM_TARGET_PROGRAMS = 264  # programs that keep a 132-SM H100 busy twice over (kernel gradient)
MIN_DOT = 16  # Triton's dot wants every block side at least this long


@dataclasses.dataclass(frozen=True)
class BlockConfig:
    """How one kernel is tiled and launched.

    For 'y' and 'x': block_m output pixels x block_n output channels per
    program, block_k contracted channels per step. For 'w': block_m rows of
    (tap, input channel) x block_n output channels, block_k output pixels per
    step, and the pixels split over split_k programs whose partial sums are
    added afterwards. Depthwise problems (one channel in and out per group)
    run elementwise kernels whose blocks span the channels of every group:
    block_n channels by block_m pixels ('y', 'x') or block_k pixels ('w').
    flat: contract over (tap, channel) as one flattened axis (for few channels
    per group, where a block of channels per tap would be mostly padding); for
    a depthwise kernel gradient, every tap in one program (each block of dy read
    once, one accumulator per tap); for a depthwise forward pass or input gradient,
    the taps unrolled (every tap's load in flight at once).
    serial: the kernel gradient's splits add their sums into one buffer in place,
    in split order, each waiting for the one before it (a counter per tile),
    instead of writing split_k partial sums that are added afterwards: the same
    result on every run, and no memory beyond the gradient itself, so that
    max_split_k does not bound it.
    rows: for a depthwise 'y' or 'x' at stride 1 and dilation 1, a kernel that rolls
    down the image (jconv/_pallas_triton.py's _depthwise_rows_kernel): `rows` output
    rows x block_m columns x block_n channels per program. 0: blocks of block_m pixels.
    tap_group: for a kernel gradient that is neither flat nor depthwise, the taps of one
    program, each with its own accumulator (block_m channels x block_n output channels),
    so that each block of dy is loaded once for all of them, not once per tap.
    Block sizes are powers of two, at least 16.
    """

    block_m: int
    block_n: int
    block_k: int
    num_warps: int = 4
    num_stages: int = 3
    split_k: int = 1
    flat: bool = False
    serial: bool = False
    rows: int = 0
    tap_group: int = 1

    def __post_init__(self) -> None:
        for name in ("block_m", "block_n", "block_k"):
            v = getattr(self, name)
            if v < MIN_DOT or v & (v - 1):
                raise ValueError(f"{name} must be a power of two >= {MIN_DOT}, got {v}")
        if (
            self.num_warps not in (1, 2, 4, 8, 16)
            or self.num_stages < 1
            or self.split_k < 1
            or self.rows < 0
            or self.tap_group < 1
        ):
            raise ValueError(f"bad launch settings in {self}")


def _pow2(n: int, lo: int, hi: int) -> int:
    """The power of two at or above n, clamped to [lo, hi]."""
    p = 1 << max(int(n) - 1, 0).bit_length()
    return max(lo, min(hi, p))


def problem_class(product: str, geometry: ConvGeometry, dtype: Any) -> str:
    """The key of a problem in TABLE: product, dtype and sizes rounded to powers of two.

    Sizes per group: contracted channels, output channels, taps and the
    GEMM's pixel count, so that the bench layers each have their own class
    and a new layer of similar shape shares one.
    """
    g = geometry
    mh, mw = g.out_hw
    k, cols = (g.og, g.cg) if product == "x" else (g.cg, g.og)
    pixels = g.n * (g.height * g.width if product == "x" else mh * mw)
    return (
        f"{product}:{np.dtype(dtype).name}:k{_pow2(k, 1, 1 << 20)}:n{_pow2(cols, 1, 1 << 20)}"
        f":t{g.kh * g.kw}:s{max(g.stride)}:m{_pow2(pixels, 1, 1 << 30)}:g{g.groups}"
    )


def max_split_k(geometry: ConvGeometry, dtype: Any) -> int:
    """The most pixel splits the kernel gradient may use, for its memory.

    Each split writes a partial sum of the whole kernel gradient in the
    accumulation dtype (float32, or float64), added up afterwards: split_k of
    them are temporary memory that lax's gradient does not hold. They are kept
    within one activation's size (the larger of x and dy), so that peak memory
    stays near lax's: on the H200, ResNet's 3x3 at 14x14 with 7 splits held
    1.67x lax's peak with the gradient (BENCHMARKS.md).
    """
    g = geometry
    itemsize = np.dtype(dtype).itemsize
    activation = max(int(np.prod(g.x_shape())), int(np.prod(g.y_shape()))) * itemsize
    partial = int(np.prod(g.w_shape())) * g.groups * max(itemsize, 4)
    return max(1, activation // partial)


def depthwise_tap_config(geometry: ConvGeometry, dtype: Any) -> BlockConfig:
    """A depthwise kernel gradient's default with a program per tap (no rolling down the
    rows): blocks of 64 pixels, the splits that keep the SMs busy within max_split_k."""
    g = geometry
    block_n = _pow2(g.c, MIN_DOT, 128)
    mh, mw = g.out_hw
    pixel_blocks = -(-g.n * mh * mw // 64)
    programs = g.kh * g.kw * -(-g.c // block_n)
    split = max(1, min(pixel_blocks, SM_TARGET_PROGRAMS // programs, max_split_k(g, dtype)))
    return BlockConfig(MIN_DOT, block_n, 64, 4, 2, split)


def default_config(product: str, geometry: ConvGeometry, dtype: Any) -> BlockConfig:
    """A reasonable tiling for any problem: what runs when TABLE has no entry."""
    g = geometry
    itemsize = np.dtype(dtype).itemsize
    most_splits = max_split_k(g, dtype)
    kmax = {2: 64, 4: 32}.get(itemsize, 16)  # keep a stage of A and B blocks in shared memory
    if g.depthwise:  # elementwise kernels: blocks of pixels x channels (of every group)
        block_n = _pow2(g.c, MIN_DOT, 128)
        if product != "w":
            return BlockConfig(64, block_n, MIN_DOT, 4, 2)
        mh, mw = g.out_hw
        if g.rollable:
            # rolling down the rows: on the H200 the bench's 56x56 layer (N=64) took 58 us
            # with whole images per program, 82 to 99 us with strips of 8 to 28 rows and
            # 110 us with a program per tap (BENCHMARKS.md); strips only where whole
            # images would leave SMs idle
            block_m, block_n = _pow2(mw, MIN_DOT, 64), _pow2(g.c, MIN_DOT, 32)
            per_strip = g.n * -(-mw // block_m) * -(-g.c // block_n)
            strips = -(-(SM_TARGET_PROGRAMS // 2) // per_strip)
            rows = max(min(mh, 8), -(-mh // strips))
            return BlockConfig(block_m, block_n, 64, 8, 2, rows=rows)
        return depthwise_tap_config(g, dtype)
    if product == "w":
        flat = g.cg < MIN_DOT
        rows = g.kh * g.kw * g.cg if flat else g.cg
        # a kernel row's taps per program (each block of dy loaded once for all of them):
        # at equal tiles 1.1x to 1.6x faster on the H200's ResNet layers (BENCHMARKS.md,
        # session 10); their accumulators take registers, so at most 64 channels a tile
        group = 1 if flat or g.kh * g.kw > 9 else g.kw
        block_m = _pow2(rows, MIN_DOT, 128 if group == 1 else 64)
        block_n = _pow2(g.og, MIN_DOT, 128)
        block_k = kmax
        mh, mw = g.out_hw
        pixel_blocks = -(-g.n * mh * mw // block_k)

        def tiles(block_m: int, block_n: int) -> int:
            row_blocks = -(-rows // block_m) * (1 if flat else -(-g.kh * g.kw // group))
            return row_blocks * -(-g.og // block_n) * g.groups

        # where the splits that memory allows leave SMs idle, smaller tiles instead
        while (
            tiles(block_m, block_n) * most_splits < SM_TARGET_PROGRAMS
            and max(block_m, block_n) > 64
        ):
            if block_m >= block_n:
                block_m //= 2
            else:
                block_n //= 2
        wanted = -(-SM_TARGET_PROGRAMS // tiles(block_m, block_n))
        split = max(1, min(pixel_blocks, wanted, most_splits))
        warps = 8 if block_m * block_n * group >= 128 * 128 else 4
        return BlockConfig(block_m, block_n, block_k, warps, 3, split, flat, tap_group=group)
    k, cols = (g.cg, g.og) if product == "y" else (g.og, g.cg)
    flat = k < MIN_DOT
    block_k = _pow2(g.kh * g.kw * k if flat else k, MIN_DOT, kmax)
    block_n = _pow2(cols, MIN_DOT, 128)
    block_m = 128 if block_n <= 64 or itemsize <= 2 else 64
    warps = 8 if block_m * block_n >= 128 * 128 else 4
    return BlockConfig(block_m, block_n, block_k, warps, 3, 1, flat)


# Measured winners, keyed by problem_class: BlockConfig(block_m, block_n, block_k,
# num_warps, num_stages, ...). Tuned on an NVIDIA H200 (jax 0.11.2, Triton 3.6.0,
# 2026-11-26, session 6), bfloat16, each bench layer at its GPU batch size, timed by
# the GPU's own kernel times (a profiler trace), by
#   PYTHONPATH=$PWD python3 -m experiments.tune_pallas --grid full --dtypes bfloat16 \
#     --budget-s 165 --repeats 3 --layers resnet14 resnet7 resnet28 resnet56 depthwise \
#     conv1x1 stride2 lenet2 lenet1 lesson
# (its table.json, written out here; benchmarks/gpu-runs/2026-11-26-h200-session6). The
# kernel gradients were tuned again with serial candidates on the same card kind (session
# 7, 2026-11-27, `--grid full --products w`): serial splits won on ResNet's 14x14 (64 -> 55
# us) and 7x7 (159 -> 152 us) and lost everywhere else; the depthwise layer's three kernels
# were tuned again with the kernels that roll down the rows (`--layers depthwise`), which
# won the kernel gradient (110 -> 58 us) and tied elsewhere (benchmarks/gpu-runs/2026-11-27-h200).
# Session 10 (same card kind, 2026-11-27): the kernel gradients with a kernel row's taps per
# program (`--grid full --products w --layers resnet14 resnet56 resnet7 resnet28 stride2
# lesson`), which won on ResNet's 56x56 (69 -> 43 us), 28x28 (50 -> 36), 14x14 (55 -> 52)
# and the stride-2 layer (33 -> 25); the forward and input gradients of resnet7, resnet14,
# resnet56 and the depthwise layer (`--products y x`), where only the depthwise layer's
# unrolled taps won (62 -> 54 us) (benchmarks/gpu-runs/2026-11-27-h200-session10).
# float32 and unseen classes take default_config; kernel-gradient partial sums are capped
# by max_split_k whatever the table says.
TABLE: dict[str, BlockConfig] = {
    "w:bfloat16:k128:n128:t25:s1:m262144:g1": BlockConfig(128, 128, 64, 8, 4, split_k=44),
    "w:bfloat16:k128:n128:t9:s1:m65536:g1": BlockConfig(64, 128, 64, 8, 3, split_k=21, tap_group=3),
    "w:bfloat16:k1:n1:t9:s1:m262144:g128": BlockConfig(64, 32, 64, 8, 2, rows=56),
    "w:bfloat16:k1:n8:t25:s1:m1048576:g1": BlockConfig(32, 16, 64, 4, 3, split_k=528, flat=True),
    "w:bfloat16:k256:n256:t9:s1:m16384:g1": BlockConfig(64, 64, 64, 4, 3, split_k=2, tap_group=3),
    "w:bfloat16:k256:n64:t1:s1:m262144:g1": BlockConfig(64, 64, 64, 4, 3, split_k=132),
    "w:bfloat16:k512:n512:t9:s1:m16384:g1": BlockConfig(128, 256, 64, 8, 3, split_k=4, serial=True),
    "w:bfloat16:k64:n128:t9:s2:m65536:g1": BlockConfig(64, 64, 64, 4, 3, split_k=44, tap_group=3),
    "w:bfloat16:k64:n64:t9:s1:m262144:g1": BlockConfig(64, 64, 64, 4, 3, split_k=88, tap_group=3),
    "w:bfloat16:k8:n16:t25:s1:m131072:g1": BlockConfig(64, 16, 64, 4, 3, split_k=132, flat=True),
    "x:bfloat16:k128:n128:t25:s1:m524288:g1": BlockConfig(256, 128, 64, 8, 3, flat=True),
    "x:bfloat16:k128:n128:t9:s1:m65536:g1": BlockConfig(128, 128, 64, 8, 3),
    "x:bfloat16:k128:n64:t9:s2:m262144:g1": BlockConfig(128, 64, 64, 4, 3),
    "x:bfloat16:k16:n8:t25:s1:m262144:g1": BlockConfig(256, 16, 32, 8, 3, flat=True),
    "x:bfloat16:k1:n1:t9:s1:m262144:g128": BlockConfig(64, 64, 16, 4, 2, flat=True),
    "x:bfloat16:k256:n256:t9:s1:m16384:g1": BlockConfig(64, 128, 64, 4, 3),
    "x:bfloat16:k512:n512:t9:s1:m16384:g1": BlockConfig(128, 128, 64, 8, 3),
    "x:bfloat16:k64:n256:t1:s1:m262144:g1": BlockConfig(128, 128, 32, 4, 4),
    "x:bfloat16:k64:n64:t9:s1:m262144:g1": BlockConfig(128, 64, 64, 4, 3),
    "x:bfloat16:k8:n1:t25:s1:m1048576:g1": BlockConfig(64, 16, 32, 4, 2, flat=True),
    "y:bfloat16:k128:n128:t25:s1:m262144:g1": BlockConfig(256, 128, 64, 8, 3, flat=True),
    "y:bfloat16:k128:n128:t9:s1:m65536:g1": BlockConfig(128, 128, 64, 8, 3),
    "y:bfloat16:k1:n1:t9:s1:m262144:g128": BlockConfig(64, 64, 16, 4, 2, flat=True),
    "y:bfloat16:k1:n8:t25:s1:m1048576:g1": BlockConfig(128, 16, 16, 4, 4, flat=True),
    "y:bfloat16:k256:n256:t9:s1:m16384:g1": BlockConfig(64, 128, 64, 4, 3),
    "y:bfloat16:k256:n64:t1:s1:m262144:g1": BlockConfig(64, 64, 64, 4, 3),
    "y:bfloat16:k512:n512:t9:s1:m16384:g1": BlockConfig(128, 128, 64, 8, 3),
    "y:bfloat16:k64:n128:t9:s2:m65536:g1": BlockConfig(128, 128, 64, 8, 3),
    "y:bfloat16:k64:n64:t9:s1:m262144:g1": BlockConfig(128, 64, 64, 4, 3),
    "y:bfloat16:k8:n16:t25:s1:m131072:g1": BlockConfig(64, 16, 32, 4, 2, flat=True),
}


def config_for(
    product: str,
    geometry: ConvGeometry,
    dtype: Any,
    table: Mapping[str, BlockConfig] | None = None,
) -> BlockConfig:
    """TABLE's setting for this problem's class, else the default.

    Partial sums (split_k > 1, not serial) are kept within max_split_k."""
    table = TABLE if table is None else table
    found = table.get(problem_class(product, geometry, dtype))
    if found is None:
        return default_config(product, geometry, dtype)
    if (
        found.split_k > 1 and not found.serial
    ):  # a class spans shapes: the memory bound is this shape's
        return dataclasses.replace(found, split_k=min(found.split_k, max_split_k(geometry, dtype)))
    return found


def pixel_config(problem: PixelProblem, config: BlockConfig) -> BlockConfig:
    """config for one input-gradient phase, or the forward pass: unchanged unless taps vanish.

    A stride phase may have far fewer taps than the kernel; its flattened
    contraction is then shorter, and block_k is not made longer than it needs.
    """
    if not config.flat:
        return config
    k = problem.taps * problem.k_per_group
    return dataclasses.replace(config, block_k=min(config.block_k, _pow2(k, MIN_DOT, 1 << 20)))


def table_to_json(table: Mapping[str, BlockConfig]) -> str:
    return json.dumps({k: dataclasses.asdict(v) for k, v in sorted(table.items())}, indent=1)


def table_from_json(text: str) -> dict[str, BlockConfig]:
    """Parse table_to_json's output (what tune_pallas.py writes); checks every entry."""
    return {k: BlockConfig(**v) for k, v in json.loads(text).items()}
