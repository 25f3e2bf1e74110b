"""The convolution's two transposes, tap by tap: exact, and written from their operands.

y = conv(x, w) is linear in x and in w. Its transposes, the gradients of a loss
with output cotangent dy, are

    dx[n, c, p] = sum over taps t and output positions q that read p with t: dy[n, o, q] w[o, c, t]
    dw[o, c, t] = sum over n and output positions q: dy[n, o, q] x_padded[n, c, q * s + t * d]

Each is written here as 'taps' writes the forward pass: one contraction per
tap ((N*mh*mw) x O times O x C/groups for dx, a contraction over N*mh*mw for
dw) and, for dx, a strided placement (lax.pad with interior padding) of each
tap's share back where the tap read x. Every product is one that lax's own
gradient forms, so an Inf or a NaN lands exactly where lax puts it: these are
the exact fallbacks of the lowerings that mix values ('banded', 'winograd'),
and the general path where those do not apply.

Everything is computed in spec.acc_dtype (at least float32), so float16 partial
sums over taps cannot overflow where the whole sum does not, and every array
derives from the two operands: no array is made from nothing, so each result
carries its operands' sharding and manual-axis types.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jconv._checks import ConvSpec
from jconv._padding import pad_input, zero_pad_or_crop
from jconv._typing import Array
from jconv._windows import tap_window


def tap_sharding(kernel_sharding: Any, axes: str) -> Any:
    """Where one tap of an OIHW kernel laid out as kernel_sharding lies.

    axes 'oi': as (O, C/groups); 'io': as (C/groups, O). None if not a NamedSharding.
    """
    if not isinstance(kernel_sharding, NamedSharding):
        return None
    o_axis, i_axis = (*tuple(kernel_sharding.spec), None, None)[:2]
    spec = P(o_axis, i_axis) if axes == "oi" else P(i_axis, o_axis)
    return NamedSharding(kernel_sharding.mesh, spec)


def _grouped(a: Array, spec: ConvSpec, per_group: int) -> tuple[Array, str]:
    """Split the channel axis of a batched activation into (groups, per_group).

    Returns the array and its einsum letters: 'nghw' + the per-group letter is
    added by the caller. With one group the group axis is left out (a size-1
    batch axis in a dot_general ran 2-3x slower on a CPU).
    """
    n, (mh, mw) = a.shape[0], a.shape[1:3] if spec.layout == "NHWC" else a.shape[2:4]
    g = spec.groups
    if spec.layout == "NHWC":
        return (a, "nhwk") if g == 1 else (a.reshape(n, mh, mw, g, per_group), "nhwgk")
    return (a, "nkhw") if g == 1 else (a.reshape(n, g, per_group, mh, mw), "ngkhw")


def transpose_x(dy: Array, w: Array, spec: ConvSpec) -> Array:
    """dy: batched output cotangent in spec.layout; w: (O, C/groups, kh, kw) -> dx like x.

    spec must have zero padding (the border's gradient is cropped away).
    """
    acc = spec.acc_dtype
    dy, w = dy.astype(acc), w.astype(acc)
    g, og, cg = spec.groups, spec.og, spec.cg
    (mh, mw), (sh, sw), (dh, dw) = spec.out_hw, spec.stride, spec.dilation
    hp, wp = spec.padded_hw
    dy, dy_sub = _grouped(dy, spec, og)
    ah, aw = (1, 2) if spec.layout == "NHWC" else (2, 3)
    dx = None
    for i in range(spec.kh):
        for j in range(spec.kw):
            w_tap = w[:, :, i, j] if g == 1 else w[:, :, i, j].reshape(g, og, cg)
            w_sub = "ko" if g == 1 else "gko"  # k: this tap's output channel, o: input channel
            out_sub = dy_sub.replace("k", "o")
            part = jnp.einsum(
                f"{dy_sub},{w_sub}->{out_sub}",
                dy,
                w_tap,
                precision=spec.precision,
                preferred_element_type=acc,
            )
            part = (
                part.reshape(part.shape[0], mh, mw, spec.c)
                if spec.layout == "NHWC"
                else (part.reshape(part.shape[0], spec.c, mh, mw))
            )
            # the tap read x_padded[a * sh + i * dh, b * sw + j * dw]: put its share back there
            config = [(0, 0, 0)] * 4
            config[ah] = (i * dh, hp - i * dh - (mh - 1) * sh - 1, sh - 1)
            config[aw] = (j * dw, wp - j * dw - (mw - 1) * sw - 1, sw - 1)
            placed = jax.lax.pad(part, jnp.zeros((), acc), config)
            dx = placed if dx is None else dx + placed
    assert dx is not None
    crop = [(0, 0)] * 4
    for axis, (lo, hi) in zip((ah, aw), spec.pads):
        crop[axis] = (-lo, -hi)
    return zero_pad_or_crop(dx, crop).astype(spec.dtype)


def transpose_w(x: Array, dy: Array, spec: ConvSpec, kernel_sharding: Any = None) -> Array:
    """x: batched, spec.layout; dy: batched output cotangent -> dw: (O, C/groups, kh, kw).

    kernel_sharding: the kernel's, where JAX's explicit sharding mode should leave
    each tap's result, a contraction over the (possibly sharded) batch; None: anywhere.
    """
    out_sharding = tap_sharding(kernel_sharding, "oi")
    acc = spec.acc_dtype
    x, dy = pad_input(x, spec).astype(acc), dy.astype(acc)
    g, og, cg = spec.groups, spec.og, spec.cg
    dy, dy_sub = _grouped(dy, spec, og)
    dy_sub = dy_sub.replace("k", "o")
    taps = []
    for i in range(spec.kh):
        for j in range(spec.kw):
            window, x_sub = _grouped(tap_window(x, spec, i, j), spec, cg)
            tap = jnp.einsum(
                f"{dy_sub},{x_sub}->{'ok' if g == 1 else 'gok'}",
                dy,
                window,
                precision=spec.precision,
                preferred_element_type=acc,
                out_sharding=None if g > 1 else out_sharding,
            )
            taps.append(tap.reshape(spec.o, cg))
    dw = jnp.stack(taps, axis=-1).reshape(spec.o, cg, spec.kh, spec.kw)
    return dw.astype(spec.dtype)
