"""Winograd's F(4, kw) along the width, lax's convolution down the columns: a lowering
only 'auto' picks (jconv/_auto.py).

'winograd' transforms 2-D tiles: F(2x2, 5x5) turns the lesson's sum over 25 taps into
36 matrix products, each its own XLA kernel with its own input transform, about 160
kernels in a forward-plus-backward program, which XLA:CPU compiled in 2.5 to 3 s at
about 12 ms a kernel (BENCHMARKS.md, session 15). Here the transform runs along the
width only. Each row of x is cut into tiles of a = kw + 3 columns at a stride of 4,
and V_v = BT d (v < a) is a plain array (N, H, tiles, C); the kernel's columns
transform the same way, U_v = G g (one (kh, C, O) kernel per v); and what is left of
the lesson's sum, kh taps down the columns and the input channels, is lax's
convolution of V_v with the kh x 1 kernel U_v, one per v. AT M gives each tile's four
outputs. So a forward pass is a + 2 elementwise kernels and a convolutions, doing
a / (4 kw) of the direct multiply-adds (5 wide: 0.4; 2-D F(2x2, 5x5): 0.36) in
convolutions that XLA:CPU runs on its own kernel, on both cores, where one extra row of
output steers them there (`eigen_y`, jconv/_method_xla_eigen.py).

The input gradient is the same construction on dy, padded to come out the size of x,
with conv_transpose2d's kernel (the outputs contracted). The kernel gradient is the
forward pass's transpose in the kernel, taken in the transformed domain: dM_v = A dy
per tile, one GEMM per v contracting the pixels of V_v's kh row shifts with dM_v, and
G's transpose back to the kernel's columns. Every member mixes values before it
multiplies them, so each is checked (jconv/_finite_guard.py), as 'winograd''s are.
Transforms and convolutions run in the accumulation dtype (at least float32), the
kernel gradient's GEMMs as 'winograd''s do (ConvSpec.gemm_dtype).

Supported: stride 1, dilation 1, one group, kernels 2 to 5 wide (F(4, kw) needs
kw + 2 interpolation points; jconv/_winograd_matrices.py knows 7), any height.

Example (the result is lax's convolution's, to rounding):

>>> import jax, jax.numpy as jnp, numpy as np
>>> from jconv._checks import check_conv_args
>>> x = jax.random.normal(jax.random.key(0), (1, 12, 12, 8))
>>> w = jax.random.normal(jax.random.key(1), (16, 8, 5, 5))  # OIHW
>>> spec = check_conv_args(x.shape, (5, 5, 8, 16), x_dtype=x.dtype, kernel_dtype=w.dtype,
...                        padding="SAME", layout="NHWC")
>>> y = winograd_1d_y(x, w, spec)
>>> ref = jax.lax.conv_general_dilated(x, w.transpose(2, 3, 1, 0), (1, 1), spec.pads,
...     dimension_numbers=("NHWC", "HWIO", "NHWC"), precision="highest")
>>> bool(np.allclose(y, ref, rtol=1e-4, atol=1e-4))
True
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from jconv._checks import ConvSpec
from jconv._conv_primitive import lowered_conv
from jconv._layouts import transposed_kernel
from jconv._lowering import Lowering
from jconv._method_taps import TAPS
from jconv._method_winograd import (  # 'winograd''s pieces, shared
    _combine,
    _from_nhwc,
    _hwio,
    _interleave,
    _matmul_grid,
    _tap_sharding,
    _tile_grid,
    _to_nhwc,
    conv_winograd,
)
from jconv._method_xla_eigen import eigen_y
from jconv._typing import Array
from jconv._winograd_matrices import POINTS, winograd_matrices

# Outputs per tile along the width. F(4, kw) did 0.4 of the direct multiply-adds on 5-wide
# kernels, with rounding errors like 'winograd''s F(2x2, 5x5) on the layers measured (2e-6
# to 3e-6 of the largest output against lax at HIGHEST, float32); F(2, kw) did 0.6 and ran
# 1.3x to 1.5x slower forward on the lesson's layer (BENCHMARKS.md, session 15).
TILE = 4
MAX_WIDTH = len(POINTS) + 2 - TILE  # kw: F(TILE, kw) takes TILE + kw - 2 finite points


def winograd_1d_supported(spec: ConvSpec) -> bool:
    """Whether the width transform applies to spec (otherwise 'winograd', which runs 'taps'
    where it has no transform of its own)."""
    return (
        spec.stride == (1, 1)
        and spec.dilation == (1, 1)
        and spec.groups == 1
        and 2 <= spec.kw <= MAX_WIDTH
    )


def _width_transform(x: Array, kw: int, low: tuple[int, int], rows: int, mw: int) -> list[Array]:
    """V_v = BT d for every tile d of x's rows: x (N, H, W, C) with low = (top, left) zero
    rows and columns in front (negative: cropped), padded or cropped at the end to `rows`
    rows and to cover the tiles of mw outputs -> a = kw + TILE - 1 arrays (N, rows,
    tiles, C). The first step of y, dx and dw."""
    tiles = (rows, -(-mw // TILE))
    columns = _tile_grid(x, low, tiles, (1, kw + TILE - 1), step=(1, TILE))[0]
    return _combine(winograd_matrices(TILE, kw).bt, columns)


def _column_spec(spec: ConvSpec, v: Array, pads_h: tuple[int, int], cout: int) -> ConvSpec:
    """The kh x 1 convolution down the columns of v: (N, H, tiles, Cin), NHWC."""
    n, height, tiles, cin = v.shape
    return dataclasses.replace(
        spec, layout="NHWC", n=n, c=cin, o=cout, height=height, width=tiles, kw=1,
        pads=(pads_h, (0, 0)), padding_mode="zeros", dtype=v.dtype,
        preferred_element_type=None, input_dilation=(1, 1),
    )  # fmt: skip


def _correlate(x: Array, w: Array, spec: ConvSpec, pads: Any) -> Array:
    """Stride-1 correlation of x: (N, H, W, Cin), zero-padded by pads ((top, bottom), (left,
    right); negative: a crop), with w: (kh, kw, Cin, Cout) -> (N, mh, mw, Cout). The
    column convolutions run as XLA_EIGEN runs lax's (`eigen_y`: an extra row of output
    where that costs little, which keeps XLA:CPU off YNNPACK's one core)."""
    kw, cout = w.shape[1], w.shape[3]
    left, right = pads[1]
    mw = x.shape[2] + left + right - kw + 1
    f = winograd_matrices(TILE, kw)
    v = _width_transform(x, kw, (0, left), x.shape[1], mw)  # (N, H, tiles, Cin) each
    u = _combine(f.g, [w[:, j] for j in range(kw)])  # U_v = G g: (kh, Cin, Cout) each
    m = [  # (N, mh, tiles, Cout) each
        eigen_y(v_j, u_j.transpose(2, 1, 0)[..., None], _column_spec(spec, v_j, pads[0], cout))
        for v_j, u_j in zip(v, u)
    ]
    return _interleave([_combine(f.at, m)], step=(1, TILE))[:, :, :mw]


def winograd_1d_y(x: Array, w: Array, spec: ConvSpec) -> Array:
    """The forward pass: x (batched, spec.layout), w OIHW -> y, zero-padded by spec.pads."""
    y = _correlate(_to_nhwc(x, spec), _hwio(w, spec), spec, spec.pads)
    return _from_nhwc(y, spec, spec.out_dtype)


def _winograd_1d_dx(dy: Array, w: Array, spec: ConvSpec) -> Array:
    """dx: dy correlated with conv_transpose2d's kernel (the flipped kernel, its channels
    swapped), padded so that it comes out (N, H, W, C)."""
    w_t = _hwio(transposed_kernel(w, 1, "NCHW"), spec)
    dx = _correlate(_to_nhwc(dy, spec), w_t, spec, spec.input_gradient_pads)
    return _from_nhwc(dx, spec, spec.dtype)


def _winograd_1d_dw(x: Array, dy: Array, spec: ConvSpec, kernel_sharding: Any) -> Array:
    """dw, OIHW, from x and the output cotangent dy (both batched, spec.layout).

    The forward pass is y = AT M per tile with M_v = V_v conv U_v and U_v = G g; its
    transpose: dM_v = A dy per tile, dU_v[i] = the sum over pixels of V_v shifted i rows
    times dM_v, one GEMM per v with V_v's kh shifts side by side, (pixels, kh * C)^T
    (pixels, O); and dw[:, j] = sum_v G[v, j] dU_v.
    """
    (top, _), (left, _) = spec.pads
    dy = _to_nhwc(dy, spec)
    n, mh, mw, o = dy.shape
    f = winograd_matrices(TILE, spec.kw)
    # (N, mh + kh - 1, tiles, C) each: x padded down the columns as the column convolutions
    # pad it
    v = _width_transform(_to_nhwc(x, spec), spec.kw, (top, left), mh + spec.kh - 1, mw)
    tiles = v[0].shape[2]
    dy_tiles = _tile_grid(dy, (0, 0), (mh, tiles), (1, TILE), step=(1, TILE))[0]
    dm = _combine(f.at.T, dy_tiles)  # dM_v = A dy per tile: (N, mh, tiles, O) each
    pixels = n * mh * tiles
    shifted = [
        jnp.stack([v_j[:, i : i + mh] for i in range(spec.kh)], axis=3).reshape(
            pixels, spec.kh, spec.c
        )
        for v_j in v
    ]
    du = _matmul_grid(
        spec, "mic,mo->ico", [shifted], [[d.reshape(pixels, o) for d in dm]],
        _tap_sharding(kernel_sharding, leading=1),
    )[0]  # fmt: skip
    dw = _combine(f.g.T, du)  # dw[:, j]: (kh, C, O) each
    return jnp.stack(dw, axis=1).transpose(3, 2, 0, 1).astype(spec.dtype)


WINOGRAD_1D = Lowering("winograd_1d", winograd_1d_y, _winograd_1d_dx, _winograd_1d_dw, grouped=TAPS)


def conv_winograd_1d(x: Array, w: Array, spec: ConvSpec) -> Array:
    """x: batched, spec.layout; w: (O, C, kh, kw) -> batched output, spec.layout:
    WINOGRAD_1D, or 'winograd' (with its fallbacks) where the width transform does not
    apply."""
    if not winograd_1d_supported(spec):
        return conv_winograd(x, w, spec)
    return lowered_conv(x, w, spec, WINOGRAD_1D)
