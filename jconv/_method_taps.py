"""method='taps': the construction with the input-channel sum as a contraction per tap.

For each kernel tap (i, j), the window of x that the tap sees is contracted
with the tap's (O, C/groups) weights over the input channels; the taps' results
are summed. Written for one output channel and vmapped over output channels,
as the lesson does, the contraction becomes one matrix product per tap
(N*mh*mw x C/groups times C/groups x O), which is where the speed comes from:
no patches in memory, kh*kw GEMMs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jconv._checks import ConvSpec
from jconv._padding import pad_input
from jconv._typing import Array
from jconv._windows import tap_window


def _contract_tap(window: Array, w_tap: Array, spec: ConvSpec) -> Array:
    """window: batched x for one tap; w_tap: (O, C/groups) -> this tap's share of y."""
    n, g, cg = window.shape[0], spec.groups, spec.cg
    mh, mw = spec.out_hw
    kw = dict(precision=spec.precision, preferred_element_type=spec.acc_dtype)
    if g == 1:
        # One output channel is a contraction over C; vmap over O makes it a plain GEMM,
        # (N*mh*mw) x C times C x O, with no group axis for XLA to batch over (a batched
        # dot_general with a size-1 batch ran 2-3x slower on a CPU).
        if spec.layout == "NHWC":

            def one_output_channel(w_o: Array) -> Array:  # (C,) -> (N, mh, mw)
                return jnp.einsum("nhwc,c->nhw", window, w_o, **kw)

            return jax.vmap(one_output_channel, out_axes=3)(w_tap)

        def one_output_channel(w_o: Array) -> Array:  # (C,) -> (N, mh, mw)
            return jnp.einsum("nchw,c->nhw", window, w_o, **kw)

        return jax.vmap(one_output_channel, out_axes=1)(w_tap)
    w_tap = w_tap.reshape(g, spec.og, cg)  # (G, Og, Cg)
    if spec.layout == "NHWC":
        window = window.reshape(n, mh, mw, g, cg)

        def one_output_channel(w_o: Array) -> Array:  # (G, Cg) -> (N, mh, mw, G)
            return jnp.einsum("nhwgc,gc->nhwg", window, w_o, **kw)

        y = jax.vmap(one_output_channel, in_axes=1, out_axes=4)(w_tap)  # (N, mh, mw, G, Og)
        return y.reshape(n, mh, mw, spec.o)
    window = window.reshape(n, g, cg, mh, mw)

    def one_output_channel(w_o: Array) -> Array:  # (G, Cg) -> (N, G, mh, mw)
        return jnp.einsum("ngchw,gc->nghw", window, w_o, **kw)

    y = jax.vmap(one_output_channel, in_axes=1, out_axes=2)(w_tap)  # (N, G, Og, mh, mw)
    return y.reshape(n, spec.o, mh, mw)


def conv_taps(x: Array, w: Array, spec: ConvSpec) -> Array:
    """x: batched, spec.layout; w: (O, C/groups, kh, kw) -> batched output, spec.layout."""
    x = pad_input(x, spec)
    y = None
    for i in range(spec.kh):
        for j in range(spec.kw):
            term = _contract_tap(tap_window(x, spec, i, j), w[:, :, i, j], spec)
            y = term if y is None else y + term
    assert y is not None
    return y.astype(spec.out_dtype)
