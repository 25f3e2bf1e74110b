"""method='banded': one matrix product per kernel row, with a banded weight matrix.

A row of the output, (mw, O), depends on kh rows of the padded input, each
(Wp, C). For kernel row i the map from an input row to its share of an output
row is linear, so it is a (Wp*C) x (mw*O) matrix T_i: banded, holding the
kernel row's taps w[:, :, i, j] at the places where input column
``b * sw + j * dw`` meets output column b. Stacking the kh input rows each
output row needs gives one GEMM, (N*mh) x (kh*Wp*C) times (kh*Wp*C) x (mw*O),
with no patches of the width kind at all.

The band is mostly zeros, so it does about Wp*groups/kw times the
multiply-adds of the convolution: worth it only when images are narrow and
channels few (LeNet's layers), where the large, regular GEMM beats every
other lowering on a CPU. 'auto' picks it there; see `banded_overhead`.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from jconv._checks import ConvSpec
from jconv._finite_guard import finite_or_fallback
from jconv._method_vmap import conv_vmap
from jconv._padding import pad_input
from jconv._typing import Array


def banded_overhead(spec: ConvSpec) -> float:
    """Multiply-adds done by the banded GEMM over those of the convolution itself."""
    return spec.padded_hw[1] * spec.groups / spec.kw


def banded_weight_bytes(spec: ConvSpec) -> int:
    """Bytes of the stacked banded matrices T (kh*Wp*C x mw*O)."""
    wp, mw = spec.padded_hw[1], spec.out_hw[1]
    return spec.kh * wp * spec.c * mw * spec.o * jnp.dtype(spec.dtype).itemsize


def _band_selector(spec: ConvSpec) -> np.ndarray:
    """S[j, wi, b] = 1 where kernel column j of output column b reads input column wi."""
    wp, mw = spec.padded_hw[1], spec.out_hw[1]
    sw, dw = spec.stride[1], spec.dilation[1]
    j, wi, b = np.ix_(np.arange(spec.kw), np.arange(wp), np.arange(mw))
    return (wi == b * sw + j * dw).astype(np.float32)


def banded_weights(w: Array, spec: ConvSpec) -> Array:
    """w: (O, C/groups, kh, kw) -> T: (kh * Wp * C, mw * O), rows (i, wi, c), columns (b, o)."""
    g, og, cg = spec.groups, spec.og, spec.cg
    w = w.reshape(g, og, cg, spec.kh, spec.kw)
    # Dense (C, O) per tap, zero across groups: block diagonal in the group index.
    w_full = jnp.einsum("gocij,gh->ijhcgo", w, jnp.eye(g, dtype=w.dtype))
    w_full = w_full.reshape(spec.kh, spec.kw, spec.c, spec.o)
    s = jnp.asarray(_band_selector(spec), w.dtype)
    t = jnp.einsum("jvb,ijco->ivcbo", s, w_full)  # (kh, Wp, C, mw, O)
    return t.reshape(spec.kh * spec.padded_hw[1] * spec.c, spec.out_hw[1] * spec.o)


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
    x = pad_input(x, spec)
    if spec.layout == "NCHW":
        x = x.transpose(0, 2, 3, 1)
    n, hp, wp, c = x.shape
    (mh, mw), sh, dh = spec.out_hw, spec.stride[0], spec.dilation[0]
    rows = x.reshape(n, hp, wp * c)
    # Output row a reads input rows a*sh + i*dh, i < kh: kh strided row slices, side by side.
    stacked = jnp.concatenate(
        [rows[:, i * dh : i * dh + (mh - 1) * sh + 1 : sh] for i in range(spec.kh)], axis=-1
    )  # (N, mh, kh*Wp*C)
    y = jnp.einsum(
        "nak,kq->naq",
        stacked,
        banded_weights(w, spec),
        precision=spec.precision,
        preferred_element_type=spec.acc_dtype,
    ).reshape(n, mh, mw, spec.o)
    if spec.layout == "NCHW":
        y = y.transpose(0, 3, 1, 2)
    return y.astype(spec.out_dtype)
