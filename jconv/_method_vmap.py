"""method='vmap': the lesson's construction, spelled out.

For each sample and each group: corr2d for every (output, input) channel pair,
a sum over input channels (corr2d_multi_in), ``jax.vmap`` over output
channels (corr2d_multi_in_out); then vmap over groups and over the batch.
Every product is elementwise, so for depthwise convolution (one input channel
per group) this is also the direct path: a multiply-add per tap, no matrix
product at all.
"""

from __future__ import annotations

import functools

import jax

from jconv._checks import ConvSpec
from jconv._lesson import corr2d_strided
from jconv._padding import pad_input
from jconv._typing import Array


def conv_vmap(x: Array, w: Array, spec: ConvSpec) -> Array:
    """x: batched, spec.layout; w: (O, C/groups, kh, kw) -> batched output, spec.layout."""
    x = pad_input(x, spec).astype(spec.acc_dtype)
    w = w.astype(spec.acc_dtype)
    if spec.layout == "NHWC":
        x = x.transpose(0, 3, 1, 2)
    n, _, hp, wp = x.shape
    g = spec.groups
    x = x.reshape(n, g, spec.cg, hp, wp)  # (N, G, Cg, Hp, Wp)
    w = w.reshape(g, spec.og, spec.cg, spec.kh, spec.kw)  # (G, Og, Cg, kh, kw)

    corr2d = functools.partial(corr2d_strided, stride=spec.stride, dilation=spec.dilation)

    def multi_in(x_i: Array, w_oi: Array) -> Array:  # (Cg, Hp, Wp), (Cg, kh, kw) -> (mh, mw)
        # The sum over input channels as a running sum (a scan), so that the per-pair
        # correlations, (N, O, C/groups, mh, mw) once vmapped, never sit in memory at once.
        def add_channel(acc: Array, pair: tuple[Array, Array]) -> tuple[Array, None]:
            return acc + corr2d(*pair), None

        # Starting from the first channel's term (not from zeros) keeps the carry's type,
        # sharding-varying axes included, that of the terms it sums.
        first = corr2d(x_i[0], w_oi[0])
        if spec.cg == 1:
            return first
        return jax.lax.scan(add_channel, first, (x_i[1:], w_oi[1:]))[0]

    multi_in_out = jax.vmap(multi_in, in_axes=(None, 0))  # over output channels
    per_sample = jax.vmap(multi_in_out)  # over groups
    y = jax.vmap(per_sample, in_axes=(0, None))(x, w)  # over the batch: (N, G, Og, mh, mw)
    y = y.reshape(n, spec.o, *spec.out_hw)
    if spec.layout == "NHWC":
        y = y.transpose(0, 2, 3, 1)
    return y.astype(spec.out_dtype)
