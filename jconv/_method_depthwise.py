"""Depthwise convolution (one input channel per group) as elementwise multiply-adds.

With one input channel per group there is nothing to contract: each tap's share
of y is the tap's window of x times the tap's weight, channel by channel (times
each of the group's outputs, for a channel multiplier above 1). 'taps' runs
depthwise problems here, and so does 'auto' on a CPU.

The three members of the bilinear family (jconv/_lowering.py):

- y: kh*kw windows, each times its weights, summed; XLA fuses them into one pass;
- dx: JAX's transpose of y, each tap's dy * w put back where its window came
  from: it forms exactly the products of the definition (zero-padding dy and
  correlating with the flipped kernel would form 0 * w at the border, NaN for an
  infinite weight);
- dw: per tap, the sum over the batch and the pixels of the window times dy, as
  a scan over the taps. Written as kh*kw reductions side by side (JAX's
  transpose of y), XLA's CPU backend materializes every window at once: kh*kw
  copies of the input as temporaries, which glibc maps afresh and the kernel
  zero-fills on every call once they pass its mmap threshold (32 MiB); on the
  bench's depthwise layer that took 25 to 30 ms of a 50 ms gradient
  (BENCHMARKS.md). The scan holds one window at a time.

No value is mixed before it is multiplied, so no result needs the finiteness
check of 'banded' and 'winograd' (jconv/_finite_guard.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jconv._checks import ConvSpec
from jconv._conv_primitive import lowered_conv
from jconv._layouts import LAYOUT_INFO
from jconv._lowering import Lowering
from jconv._padding import pad_input
from jconv._typing import Array
from jconv._windows import tap_window


def _split_groups(a: Array, spec: ConvSpec, per_group: int) -> Array:
    """Batched activation (spec.layout) -> its channel axis split into (groups, per_group)."""
    axis = LAYOUT_INFO[spec.layout].channel_axis
    return a.reshape(*a.shape[:axis], spec.groups, per_group, *a.shape[axis + 1 :])


def _weights(w_tap: Array, spec: ConvSpec) -> Array:
    """One tap's weights, (O,) = (groups * og,), as (G, og, 1, 1): against a split NCHW one."""
    return w_tap.reshape(spec.groups, spec.og, 1, 1)


def _merge_groups(a: Array, spec: ConvSpec) -> Array:
    axis = LAYOUT_INFO[spec.layout].channel_axis
    return a.reshape(*a.shape[:axis], spec.o, *a.shape[axis + 2 :])


def _depthwise_y(x: Array, w: Array, spec: ConvSpec) -> Array:
    """x: batched, spec.layout (zero-padded here); w: (O, 1, kh, kw) -> y, spec.layout.

    Computed in NCHW (x transposed first where it is NHWC, y transposed back): each
    window a slice of the two minor axes. With the channels minor instead, XLA's CPU
    backend merged the windows' sum into a consumer's reduction (a loss's) as a library
    fusion that took every window as a materialized copy: kh*kw copies of x as
    temporaries, which ran the bench's forward-plus-backward 10x slower (BENCHMARKS.md).
    """
    acc = spec.acc_dtype
    x, w = pad_input(x.astype(acc), spec), w.astype(acc)
    nchw = dataclasses.replace(spec, layout="NCHW")
    if spec.layout == "NHWC":
        x = x.transpose(0, 3, 1, 2)
    y = None
    for i in range(spec.kh):
        for j in range(spec.kw):
            window = _split_groups(tap_window(x, nchw, i, j), nchw, 1)
            term = window * _weights(w[:, 0, i, j], nchw)
            y = term if y is None else y + term
    assert y is not None
    y = _merge_groups(y, nchw)
    if spec.layout == "NHWC":
        y = y.transpose(0, 2, 3, 1)
    return y.astype(spec.out_dtype)


def _depthwise_dw(x: Array, dy: Array, spec: ConvSpec, kernel_sharding: Any) -> Array:
    """x: batched (spec.layout); dy: batched output -> dw: (O, 1, kh, kw), one tap at a time."""
    del kernel_sharding  # a sum over the batch: replicated, wherever the batch lies
    acc = spec.acc_dtype
    x = pad_input(x.astype(acc), spec)
    # (N, mh, mw, G, og) or (N, G, og, mh, mw); left whole for one output per group (a
    # minor axis of size 1 slowed XLA's CPU reduction 3x)
    multiplier = spec.og > 1
    dy = dy.astype(acc)
    if multiplier:
        dy = _split_groups(dy, spec, spec.og)
    (mh, mw), (sh, sw), (dh, dw) = spec.out_hw, spec.stride, spec.dilation
    ah, aw = LAYOUT_INFO[spec.layout].spatial_axes
    sizes = list(x.shape)  # what every tap's strided window spans
    sizes[ah], sizes[aw] = (mh - 1) * sh + 1, (mw - 1) * sw + 1
    channel = LAYOUT_INFO[spec.layout].channel_axis
    kept = (channel, channel + 1) if multiplier else (channel,)
    summed = tuple(a for a in range(dy.ndim) if a not in kept)
    taps = [(i * dh, j * dw) for i in range(spec.kh) for j in range(spec.kw)]
    offsets = jnp.asarray(np.array(taps, dtype=np.int32))

    def one_tap(carry: None, offset: Array) -> tuple[None, Array]:
        zero = jnp.zeros((), offset.dtype)
        start = [zero, zero, zero, zero]
        start[ah], start[aw] = offset[0], offset[1]
        window = tap_window(jax.lax.dynamic_slice(x, start, sizes), spec, 0, 0)  # strided
        product = (_split_groups(window, spec, 1) if multiplier else window) * dy
        return carry, product.sum(summed)  # (G, og) or (O,)

    per_tap = jax.lax.scan(one_tap, None, offsets)[1]  # (kh*kw, G, og)
    dw_taps = per_tap.reshape(spec.kh, spec.kw, spec.o)
    return dw_taps.transpose(2, 0, 1)[:, None].astype(spec.dtype)


DEPTHWISE = Lowering("taps", _depthwise_y, dw=_depthwise_dw, guarded=frozenset())


def conv_depthwise(x: Array, w: Array, spec: ConvSpec) -> Array:
    """x: batched, spec.layout, one input channel per group; w: (O, 1, kh, kw) -> y."""
    return lowered_conv(x, w, spec, DEPTHWISE)
