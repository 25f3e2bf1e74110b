"""method='taps': the construction with the input-channel sum as a contraction per tap.

For each kernel tap (i, j), the window of x that the tap sees is contracted
with the tap's (O, C/groups) weights over the input channels; the taps' results
are summed. Written for one output channel and vmapped over output channels,
as the lesson does, the contraction becomes one matrix product per tap
(N*mh*mw x C/groups times C/groups x O), which is where the speed comes from:
no patches in memory, kh*kw GEMMs. With one input channel per group (depthwise
convolution, or a single-channel input) there is nothing to contract, and each
tap's share is an elementwise product: jconv/_method_depthwise.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jconv._checks import ConvSpec
from jconv._lowering import Lowering
from jconv._method_depthwise import conv_depthwise
from jconv._padding import pad_input
from jconv._typing import Array
from jconv._windows import tap_window


def _contract_tap(window: Array, w_tap: Array, spec: ConvSpec) -> Array:
    """window: batched x for one tap; w_tap: (O, C/groups) -> this tap's share of y.

    With one group the group axis is left out altogether: vmapped, the contraction is
    then a plain GEMM, (N*mh*mw) x C times C x O (a batched dot_general with a size-1
    batch axis is slower on a CPU; BENCHMARKS.md).
    """
    n, g, cg = window.shape[0], spec.groups, spec.cg
    mh, mw = spec.out_hw
    if spec.layout == "NHWC":
        shape, group_axis, subscripts = [n, mh, mw, g, cg], 3, "nhwgc,gc->nhwg"
    else:
        shape, group_axis, subscripts = [n, g, cg, mh, mw], 1, "ngchw,gc->nghw"
    w_tap = w_tap.reshape(g, spec.og, cg)  # (G, Og, Cg): vmapped over Og
    out_axis, in_axis = group_axis + 1, 1  # Og goes right after G
    if g == 1:
        del shape[group_axis]
        subscripts, w_tap, out_axis, in_axis = subscripts.replace("g", ""), w_tap[0], group_axis, 0
    window = window.reshape(shape)

    def one_output_channel(w_o: Array) -> Array:  # (G, Cg) or (C,) -> y for one o of each group
        return jnp.einsum(
            subscripts, window, w_o, precision=spec.precision, preferred_element_type=spec.acc_dtype
        )

    y = jax.vmap(one_output_channel, in_axes=in_axis, out_axes=out_axis)(w_tap)
    return y.reshape(n, mh, mw, spec.o) if spec.layout == "NHWC" else y.reshape(n, spec.o, mh, mw)


def _taps_gemm(x: Array, w: Array, spec: ConvSpec) -> Array:
    """x: batched, spec.layout; w: (O, C/groups, kh, kw) -> batched output; a GEMM per tap."""
    # in float16, one tap's share of the gradient could overflow where the sum does not
    x, w = pad_input(x, spec).astype(spec.gemm_dtype), w.astype(spec.gemm_dtype)
    y = None
    for i in range(spec.kh):
        for j in range(spec.kw):
            term = _contract_tap(tap_window(x, spec, i, j), w[:, :, i, j], spec)
            y = term if y is None else y + term
    assert y is not None
    return y.astype(spec.out_dtype)


def conv_taps(x: Array, w: Array, spec: ConvSpec) -> Array:
    """x: batched, spec.layout; w: (O, C/groups, kh, kw) -> batched output, spec.layout."""
    if spec.cg == 1:
        return conv_depthwise(x, w, spec)
    return _taps_gemm(x, w, spec)


# As a lowering (jconv/_lowering.py): its gradients are JAX's transposes of the per-tap
# GEMMs, which form exactly the products the gradients' definitions form.
TAPS = Lowering("taps", _taps_gemm)
