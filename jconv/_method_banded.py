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

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jconv._checks import ConvSpec
from jconv._finite_guard import finite_or_fallback
from jconv._method_vmap import conv_vmap
from jconv._padding import pad_input, zero_pad_or_crop
from jconv._typing import Array

BLOCK_COLUMNS = 32  # aim for GEMMs at least this wide: block * O columns


def banded_block(spec: ConvSpec) -> int:
    """Output columns per block: enough for BLOCK_COLUMNS GEMM columns, at most mw.

    Narrow blocks waste little on the band's zeros (a block of b columns reads
    (b - 1) * sw + (kw - 1) * dw + 1 input columns); wide ones make wider GEMMs.
    On LeNet's second layer (O = 16) 2-column blocks ran 1.3x faster than the
    whole row forward and 1.1x forward-plus-backward.
    """
    return max(1, min(spec.out_hw[1], -(-BLOCK_COLUMNS // spec.o)))


def banded_overhead(spec: ConvSpec) -> float:
    """Multiply-adds done by the blocked banded GEMM over those of the convolution itself."""
    mw, block = spec.out_hw[1], banded_block(spec)
    blocks = -(-mw // block)
    return blocks * block * _block_input_width(spec, block) * spec.groups / (mw * spec.kw)


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


def conv_banded(x: Array, w: Array, spec: ConvSpec) -> Array:
    """x: batched, spec.layout; w: (O, C/groups, kh, kw) -> batched output, spec.layout.

    The band's zeros would turn one Inf or NaN in x into NaNs along whole output
    rows (0 * Inf is NaN), where lax gives them only to the outputs that read it.
    So an x that is not all finite goes to 'vmap' instead (jconv/_finite_guard.py).
    The fallback is 'vmap' (which multiplies every weight by every value it sees, as
    lax does): with 'taps' there, the compiled program ran 2x slower on a CPU even
    when the fallback was never taken (LeNet conv2, 5.5 ms against 2.7 ms).
    """
    fast = functools.partial(_conv_banded, spec=spec)
    return finite_or_fallback(fast, functools.partial(conv_vmap, spec=spec), x, w)


def _conv_banded(x: Array, w: Array, spec: ConvSpec) -> Array:
    """Blocks of `banded_block` output columns, all sharing one T: one GEMM."""
    x = pad_input(x, spec)
    if spec.layout == "NCHW":
        x = x.transpose(0, 2, 3, 1)
    n, _, wp, c = x.shape
    (mh, mw), sh, dh = spec.out_hw, spec.stride[0], spec.dilation[0]
    block = banded_block(spec)
    blocks = -(-mw // block)
    step, in_width = block * spec.stride[1], _block_input_width(spec, block)
    need = (blocks - 1) * step + in_width  # zero columns past Wp feed only cropped outputs
    x = zero_pad_or_crop(x, [(0, 0), (0, 0), (0, need - wp), (0, 0)])
    # Output row a reads input rows a*sh + i*dh, i < kh: kh strided row slices, side by side,
    # and output block b reads input columns b*step ... b*step + in_width - 1.
    row_slices = [x[:, i * dh : i * dh + (mh - 1) * sh + 1 : sh] for i in range(spec.kh)]
    stacked = jnp.stack(
        [
            jnp.concatenate([r[:, :, b * step : b * step + in_width] for r in row_slices], axis=2)
            for b in range(blocks)
        ],
        axis=2,
    ).reshape(n, mh, blocks, spec.kh * in_width * c)
    y = jnp.einsum(
        "nabk,kq->nabq",
        stacked,
        banded_weights(w, spec, block),
        precision=spec.precision,
        preferred_element_type=spec.acc_dtype,
    )
    # One split, then one merge: JAX's explicit sharding mode refuses both at once.
    y = y.reshape(n, mh, blocks, block, spec.o).reshape(n, mh, blocks * block, spec.o)[:, :, :mw]
    if spec.layout == "NCHW":
        y = y.transpose(0, 3, 1, 2)
    return y.astype(spec.out_dtype)
