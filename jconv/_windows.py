"""Strided windows of a padded input, one per kernel tap: what every lowering reads."""

from __future__ import annotations

import jax

from jconv._checks import ConvSpec
from jconv._layouts import LAYOUT_INFO
from jconv._typing import Array


def tap_window(x: Array, spec: ConvSpec, i: int, j: int) -> Array:
    """The part of a padded, batched x that kernel tap (i, j) multiplies.

    x: (N, C, Hp, Wp) or (N, Hp, Wp, C) per spec.layout -> (N, C, mh, mw) or
    (N, mh, mw, C): ``window[..., a, b, ...] = x[..., a * sh + i * dh, b * sw + j * dw, ...]``.
    """
    (mh, mw), (sh, sw), (dh, dw) = spec.out_hw, spec.stride, spec.dilation
    start = [0, 0, 0, 0]
    limit = list(x.shape)
    strides = [1, 1, 1, 1]
    ah, aw = LAYOUT_INFO[spec.layout].spatial_axes
    start[ah], limit[ah], strides[ah] = i * dh, i * dh + (mh - 1) * sh + 1, sh
    start[aw], limit[aw], strides[aw] = j * dw, j * dw + (mw - 1) * sw + 1, sw
    return jax.lax.slice(x, start, limit, strides)


def spread_widths(
    padded: int, out: int, stride: int, dilation: int, tap: int
) -> tuple[int, int, int]:
    """lax.pad's (low, high, interior) along one spatial axis that put a tap's window back
    where `tap_window` took it from: the window's transpose, zeros between its pixels
    for the stride. padded: x's padded length; out: the window's (the output's) length.
    """
    low = tap * dilation
    return low, padded - low - (out - 1) * stride - 1, stride - 1
