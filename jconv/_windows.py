"""Strided windows of a padded input, one per kernel tap: what every lowering reads."""

from __future__ import annotations

import jax
import jax.numpy as jnp

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


def zero_padded_tap_window(x: Array, spec: ConvSpec, i: int, j: int) -> Array:
    """tap_window of x zero-padded by spec.pads, the padding done for this tap alone.

    x: batched and unpadded, spec.layout. One pad (negative widths crop) per tap and a
    strided slice: where each tap's window is its own pad, XLA fuses it into the
    window's consumer, where one padded x shared by every tap is a copy of x in memory
    (jconv/_method_depthwise.py uses it where that was faster). The same values as
    ``tap_window(pad_input(x, spec), spec, i, j)`` for zero padding.
    """
    (mh, mw), (sh, sw), (dh, dw) = spec.out_hw, spec.stride, spec.dilation
    widths, strides = [(0, 0, 0)] * 4, [1, 1, 1, 1]
    for axis, (low_pad, _), tap, dilation, out, stride in zip(
        LAYOUT_INFO[spec.layout].spatial_axes, spec.pads, (i, j), (dh, dw), (mh, mw), (sh, sw)
    ):
        low = low_pad - tap * dilation  # zeros before x (negative: rows of x cut off)
        widths[axis] = (low, (out - 1) * stride + 1 - x.shape[axis] - low, 0)
        strides[axis] = stride
    window = jax.lax.pad(x, jnp.zeros((), x.dtype), widths)
    return (
        window if strides == [1, 1, 1, 1] else jax.lax.slice(window, [0] * 4, window.shape, strides)
    )


def spread_widths(
    padded: int, out: int, stride: int, dilation: int, tap: int
) -> tuple[int, int, int]:
    """lax.pad's (low, high, interior) along one spatial axis that put a tap's window back
    where `tap_window` took it from: the window's transpose, zeros between its pixels
    for the stride. padded: x's padded length; out: the window's (the output's) length.
    """
    low = tap * dilation
    return low, padded - low - (out - 1) * stride - 1, stride - 1
