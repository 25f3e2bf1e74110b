"""method='banded': one matrix product per kernel row and block of output columns.

A row of the output, (mw, O), depends on kh rows of the padded input, each
(Wp, C). For kernel row i the map from an input row to its share of an output
row is linear: a banded (Wp*C) x (mw*O) matrix holding the kernel row's taps
w[:, :, i, j] where input column ``b * sw + j * dw`` meets output column b.
Cut the output row into blocks of `banded_block` columns: every block reads
the same number of input columns and sees the same band, so one matrix T,
(kh*Win*C) x (block*O), serves them all, and the whole convolution is one
GEMM, (N*mh*blocks) x (kh*Win*C) times T.

The band's zeros cost extra multiply-adds (`banded_overhead`: 1.2x for LeNet's
second layer), which buys one large, regular GEMM where the other lowerings
would make many with a tiny contraction (C*kw = 30 there). 'auto' picks it for
such layers: few channels, small kernels (see jconv/_auto.py).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jconv._checks import ConvSpec
from jconv._conv_primitive import lowered_conv
from jconv._lowering import Lowering
from jconv._method_depthwise import elementwise_y
from jconv._method_taps import TAPS
from jconv._method_xla import conv_xla
from jconv._padding import pad_input, zero_pad_or_crop
from jconv._typing import Array
from jconv._windows import spread_widths

BLOCK_COLUMNS = 32  # aim for GEMMs at least this wide: block * O columns
# And at least this many output columns per block: a 1-column block is im2col, whose rows
# repeat each input pixel kh * kw times; 2 columns share their middle input columns.
MIN_BLOCK = 2
# Block windows sliced one by one up to this many (kh * blocks); beyond, by shift. Compile
# time grows about linearly with the count (BENCHMARKS.md).
MAX_BLOCK_SLICES = 128


def banded_block(spec: ConvSpec) -> int:
    """Output columns per block: enough for BLOCK_COLUMNS GEMM columns, at least
    MIN_BLOCK, at most mw.

    Narrow blocks waste little on the band's zeros (a block of b columns reads
    (b - 1) * sw + (kw - 1) * dw + 1 input columns); wide ones make wider GEMMs and
    smaller stacked inputs (a row of the stacked input holds kh * that many * C
    values for b output pixels). On LeNet's second layer (O = 16), 2-column blocks
    are faster than whole rows, forward and forward-plus-backward; with 32 outputs
    on 3 channels (3x3 at 112x112, 5x5 at 64x64), 2-column blocks ran the forward
    pass 1.5x faster than 1-column ones (BENCHMARKS.md).
    """
    return max(1, min(spec.out_hw[1], max(MIN_BLOCK, -(-BLOCK_COLUMNS // spec.o))))


def banded_overhead(spec: ConvSpec) -> float:
    """Multiply-adds done by the blocked banded GEMM over those of the convolution itself."""
    mw, block = spec.out_hw[1], banded_block(spec)
    blocks = -(-mw // block)
    return blocks * block * _block_input_width(spec, block) * spec.groups / (mw * spec.kw)


def banded_unrolled(spec: ConvSpec) -> int:
    """Block windows, kh * blocks: slices in the program up to MAX_BLOCK_SLICES."""
    return spec.kh * -(-spec.out_hw[1] // banded_block(spec))


def banded_weight_bytes(spec: ConvSpec) -> int:
    """Bytes of the stacked banded matrix T (kh*Win*C x block*O)."""
    block = banded_block(spec)
    in_width = _block_input_width(spec, block)
    return spec.kh * in_width * spec.c * block * spec.o * jnp.dtype(spec.dtype).itemsize


def _band_selector(spec: ConvSpec, in_width: int, out_width: int) -> np.ndarray:
    """S[j, wi, b] = 1 where kernel column j of output column b reads input column wi."""
    sw, dw = spec.stride[1], spec.dilation[1]
    j, wi, b = np.ix_(np.arange(spec.kw), np.arange(in_width), np.arange(out_width))
    return (wi == b * sw + j * dw).astype(np.float32)


def banded_weights(w: Array, spec: ConvSpec, out_width: int) -> Array:
    """w: (O, C/groups, kh, kw) -> T: (kh*Win*C, out_width*O), rows (i, wi, c), columns (b, o).

    out_width adjacent output columns read Win input columns.
    """
    in_width = _block_input_width(spec, out_width)
    g, og, cg = spec.groups, spec.og, spec.cg
    w = w.reshape(g, og, cg, spec.kh, spec.kw)
    # Both products below only place weights (each output sums one weight times 1 and
    # zeros), so they are exact, but only at HIGHEST: at the default precision a GPU
    # rounds float32 operands to TF32, which would round every weight.
    exact = jax.lax.Precision.HIGHEST
    # Dense (C, O) per tap, zero across groups: block diagonal in the group index.
    w_full = jnp.einsum("gocij,gh->ijhcgo", w, jnp.eye(g, dtype=w.dtype), precision=exact)
    w_full = w_full.reshape(spec.kh, spec.kw, spec.c, spec.o)
    s = jnp.asarray(_band_selector(spec, in_width, out_width), w.dtype)
    t = jnp.einsum("jvb,ijco->ivcbo", s, w_full, precision=exact)  # (kh, Win, C, out_width, O)
    return t.reshape(spec.kh * in_width * spec.c, out_width * spec.o)


def _block_input_width(spec: ConvSpec, out_width: int) -> int:
    """Input columns that out_width adjacent output columns read."""
    return (out_width - 1) * spec.stride[1] + (spec.kw - 1) * spec.dilation[1] + 1


class _Geometry(NamedTuple):
    block: int  # output columns per block
    blocks: int  # blocks per output row
    step: int  # input columns from one block to the next: block * sw
    in_width: int  # input columns one block reads (Win)
    need: int  # input columns the blocks span


def _geometry(spec: ConvSpec) -> _Geometry:
    block = banded_block(spec)
    blocks = -(-spec.out_hw[1] // block)
    step, in_width = block * spec.stride[1], _block_input_width(spec, block)
    return _Geometry(block, blocks, step, in_width, (blocks - 1) * step + in_width)


def _stacked_input(x: Array, spec: ConvSpec) -> Array:
    """x: batched, spec.layout -> (N, mh, blocks, kh*Win*C): what each block's GEMM row reads.

    Entry (n, a, b, (i, v, c)) is x_padded[n, a*sh + i*dh, b*step + v, c]. Up to
    MAX_BLOCK_SLICES block windows (kh * blocks), each block's Win columns are
    sliced from each of the kh strided row slices and set side by side: the
    fastest on a CPU for LeNet's layers. Beyond, the program would grow with the
    image's width, so the columns are cut into steps, (need/step, step*C), and
    block b's window is `shifts` consecutive steps from step b: one slice per
    (kernel row, shift), for all blocks at once.
    """
    x = pad_input(x, spec)
    if spec.layout == "NCHW":
        x = x.transpose(0, 2, 3, 1)
    n, _, wp, c = x.shape
    (mh, _), sh, dh = spec.out_hw, spec.stride[0], spec.dilation[0]
    geo = _geometry(spec)
    shifts = -(-geo.in_width // geo.step)
    by_block = banded_unrolled(spec) <= MAX_BLOCK_SLICES
    columns = geo.need if by_block else (geo.blocks + shifts - 1) * geo.step
    # zero columns past Wp feed only cropped outputs; columns past these are never read
    x = zero_pad_or_crop(x, [(0, 0), (0, 0), (0, columns - wp), (0, 0)])
    rows = [x[:, i * dh : i * dh + (mh - 1) * sh + 1 : sh] for i in range(spec.kh)]
    if by_block:
        windows = [
            jnp.concatenate([r[:, :, b * geo.step : b * geo.step + geo.in_width] for r in rows], 2)
            for b in range(geo.blocks)
        ]  # each (N, mh, kh*Win, C)
        return jnp.stack(windows, axis=2).reshape(n, mh, geo.blocks, spec.kh * geo.in_width * c)
    parts = []
    for r in rows:
        # One split, then one merge: JAX's explicit sharding mode refuses both at once.
        steps = r.reshape(n, mh, columns // geo.step, geo.step, c)
        steps = steps.reshape(n, mh, columns // geo.step, geo.step * c)
        for s in range(shifts):
            width = min(geo.step, geo.in_width - s * geo.step) * c
            parts.append(steps[:, :, s : s + geo.blocks, :width])
    return jnp.concatenate(parts, axis=3)


def _unstack_input(d_stacked: Array, spec: ConvSpec) -> Array:
    """The transpose of `_stacked_input`: (N, mh, blocks, kh*Win*C) -> dx like x.

    Block b's window starts `step` columns after block b-1's. Cut the columns into
    steps, (need/step, step*C): the window's first `step` columns of every block
    then land, all at once, on steps b, the next `step` columns on steps b + 1, and
    so on. One pad per (kernel row, shift), ceil(Win/step) shifts: the work does
    not grow with the number of blocks, as adding each block's window back
    separately would (a full-width pad per block).
    """
    geo = _geometry(spec)
    n, mh, c = d_stacked.shape[0], spec.out_hw[0], spec.c
    (sh, dh), (hp, wp) = (spec.stride[0], spec.dilation[0]), spec.padded_hw
    shifts = -(-geo.in_width // geo.step)
    steps_total = geo.blocks + shifts - 1
    width, span = geo.in_width * c, geo.step * c
    zero = jnp.zeros((), d_stacked.dtype)
    dx = None
    for i in range(spec.kh):
        window = d_stacked[..., i * width : (i + 1) * width]  # (N, mh, blocks, Win*C)
        window = zero_pad_or_crop(window, [(0, 0)] * 3 + [(0, shifts * span - width)])
        steps = None  # (N, mh, blocks + shifts - 1, step*C)
        for s in range(shifts):
            share = jax.lax.pad(
                window[..., s * span : (s + 1) * span],
                zero,
                [(0, 0, 0), (0, 0, 0), (s, shifts - 1 - s, 0), (0, 0, 0)],
            )
            steps = share if steps is None else steps + share
        assert steps is not None
        # One split, then one merge: JAX's explicit sharding mode refuses both at once.
        rows = steps.reshape(n, mh, steps_total, geo.step, c).reshape(n, mh, -1, c)
        placed = jax.lax.pad(
            rows,
            zero,
            [(0, 0, 0), spread_widths(hp, mh, sh, dh, i), (0, 0, 0), (0, 0, 0)],
        )
        dx = placed if dx is None else dx + placed
    assert dx is not None
    (top, bottom), (left, right) = spec.pads
    columns = steps_total * geo.step
    dx = zero_pad_or_crop(dx, [(0, 0), (-top, -bottom), (-left, wp - columns - right), (0, 0)])
    return dx.transpose(0, 3, 1, 2) if spec.layout == "NCHW" else dx


def _blocked_output(dy: Array, spec: ConvSpec) -> Array:
    """A batched output (cotangent) in spec.layout -> (N, mh, blocks, block*O)."""
    if spec.layout == "NCHW":
        dy = dy.transpose(0, 2, 3, 1)
    n, mh, mw, o = dy.shape
    block, blocks = _geometry(spec)[:2]
    dy = zero_pad_or_crop(dy, [(0, 0), (0, 0), (0, blocks * block - mw), (0, 0)])
    # One split, then one merge: JAX's explicit sharding mode refuses both at once.
    return dy.reshape(n, mh, blocks, block, o).reshape(n, mh, blocks, block * o)


def _banded_y(x: Array, w: Array, spec: ConvSpec) -> Array:
    """Blocks of `banded_block` output columns, all sharing one T: one GEMM."""
    block, blocks = _geometry(spec)[:2]
    stacked = _stacked_input(x, spec)
    n, mh = stacked.shape[:2]
    y = jnp.einsum(
        "nabk,kq->nabq",
        stacked,
        banded_weights(w, spec, block),
        precision=spec.precision,
        preferred_element_type=spec.acc_dtype,
    )
    # One split, then one merge: JAX's explicit sharding mode refuses both at once.
    y = y.reshape(n, mh, blocks, block, spec.o).reshape(n, mh, blocks * block, spec.o)
    y = y[:, :, : spec.out_hw[1]]
    if spec.layout == "NCHW":
        y = y.transpose(0, 3, 1, 2)
    return y.astype(spec.out_dtype)


def _banded_dx(dy: Array, w: Array, spec: ConvSpec) -> Array:
    """The transpose in x: one GEMM with T's transpose, then each window put back.

    The GEMM takes dy and T as they are in bfloat16 (spec.gemm_dtype), accumulating in
    float32. Widened first, dy became a float32 copy of the layer's largest array, one
    more pass over memory and, on a CPU, fresh pages to fault in on every call: half of
    the input gradient of a 3 -> 64 layer at 224x224, now 2.2x to 2.5x faster
    (BENCHMARKS.md, session 12).
    """
    acc, gemm = spec.acc_dtype, spec.gemm_dtype
    d_stacked = jnp.einsum(
        "nabq,kq->nabk",
        _blocked_output(dy, spec).astype(gemm),
        banded_weights(w.astype(gemm), spec, banded_block(spec)),
        precision=spec.precision,
        preferred_element_type=acc,
    )
    return _unstack_input(d_stacked, spec).astype(spec.dtype)


def _banded_dw(x: Array, dy: Array, spec: ConvSpec, kernel_sharding: Any) -> Array:
    """The transpose in w: T's gradient in one GEMM (contracting the batch, rows and
    blocks), then each tap's entries gathered from the band and its group's block."""
    acc = spec.acc_dtype
    geo = _geometry(spec)
    g, og, cg = spec.groups, spec.og, spec.cg
    mesh = getattr(kernel_sharding, "mesh", None)
    stacked = _stacked_input(x.astype(acc), spec)
    dy_blocks = _blocked_output(dy.astype(acc), spec)
    # As one 2-D product, (N*mh*blocks, K)^T (N*mh*blocks, Q): with the three contracted
    # axes left separate, XLA copies the stacked input to a transposed layout first,
    # which is slower on a CPU (BENCHMARKS.md).
    d_t = jax.lax.dot_general(
        stacked.reshape(-1, stacked.shape[-1]),
        dy_blocks.reshape(-1, dy_blocks.shape[-1]),
        (((0,), (0,)), ((), ())),
        precision=spec.precision,
        preferred_element_type=acc,
        out_sharding=None if mesh is None else NamedSharding(mesh, P()),
    ).reshape(spec.kh, geo.in_width, spec.c, geo.block, spec.o)
    # Both products below only gather entries (each sums one value times 1 and zeros):
    # exact at HIGHEST, where a GPU's default precision would round them to TF32.
    exact = jax.lax.Precision.HIGHEST
    s = jnp.asarray(_band_selector(spec, geo.in_width, geo.block), acc)
    dw_full = jnp.einsum("jvb,ivcbo->ijco", s, d_t, precision=exact)
    dw_full = dw_full.reshape(spec.kh, spec.kw, g, cg, g, og)
    dw = jnp.einsum("ijhcgo,gh->gocij", dw_full, jnp.eye(g, dtype=acc), precision=exact)
    return dw.reshape(spec.o, cg, spec.kh, spec.kw).astype(spec.dtype)


BANDED = Lowering("banded", _banded_y, _banded_dx, _banded_dw, grouped=TAPS)
# lax's forward pass with the band's gradients, for 'auto' where lax's CPU convolution ran
# the forward pass faster than the band but its gradients slower (jconv/_auto.py). lax's
# result needs no check: it mixes nothing before multiplying.
BANDED_GRADIENTS = Lowering(
    "banded_gradients", conv_xla, _banded_dx, _banded_dw, grouped=TAPS,
    guarded=frozenset({"dx", "dw"}),
)  # fmt: skip


# One to three input channels: the elementwise forward pass of 'taps' (a multiply-add per
# tap, input channel and output channel, jconv/_method_depthwise.py), which ran 1.3x to
# 4.9x faster than both the band and lax on a single-channel input with few enough
# outputs times taps, and 1.4x to 3.6x faster than the band on 2 or 3 channels with 3x3
# kernels, and the band's gradients (jconv/_auto.py). Like lax's, that forward pass
# mixes nothing first.
TAPS_BANDED_GRADIENTS = Lowering(
    "taps_banded_gradients", elementwise_y, _banded_dx, _banded_dw, grouped=TAPS,
    guarded=frozenset({"dx", "dw"}),
)  # fmt: skip


def conv_banded(x: Array, w: Array, spec: ConvSpec) -> Array:
    """x: batched, spec.layout; w: (O, C/groups, kh, kw) -> batched output, spec.layout.

    The band's zeros would turn one Inf or NaN in x into NaNs along whole output
    rows (0 * Inf is NaN), where lax gives them only to the outputs that read it:
    jconv/_conv_primitive.py checks every result and recomputes it with lax's if
    it is not all finite.
    """
    return lowered_conv(x, w, spec, BANDED)


def conv_banded_gradients(x: Array, w: Array, spec: ConvSpec) -> Array:
    """lax's convolution, differentiated by 'banded''s members (BANDED_GRADIENTS)."""
    return lowered_conv(x, w, spec, BANDED_GRADIENTS)


def conv_taps_banded_gradients(x: Array, w: Array, spec: ConvSpec) -> Array:
    """A few input channels: 'taps''s elementwise forward pass, differentiated by
    'banded''s members (TAPS_BANDED_GRADIENTS)."""
    return lowered_conv(x, w, spec, TAPS_BANDED_GRADIENTS)
