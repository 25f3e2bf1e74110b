"""method='im2col': gather every tap's window into patches, then one matrix product.

The patches hold kh*kw copies of the (strided) input, (N*mh*mw) x (kh*kw*C/groups),
so this trades memory for a single large GEMM: the fastest choice when the
patches are small (few channels, small images, 1x1 kernels), a poor one when
they would not fit.
"""

from __future__ import annotations

import jax.numpy as jnp

from jconv._checks import ConvSpec
from jconv._padding import pad_input
from jconv._typing import Array
from jconv._windows import tap_window


def conv_im2col(x: Array, w: Array, spec: ConvSpec) -> Array:
    """x: batched, spec.layout; w: (O, C/groups, kh, kw) -> batched output, spec.layout."""
    # in float16, the gradient's overlapping patches could overflow where their sum does not
    x, w = pad_input(x, spec).astype(spec.gemm_dtype), w.astype(spec.gemm_dtype)
    n, g, cg, og = x.shape[0], spec.groups, spec.cg, spec.og
    mh, mw = spec.out_hw
    taps = [tap_window(x, spec, i, j) for i in range(spec.kh) for j in range(spec.kw)]
    t = len(taps)
    kw = dict(precision=spec.precision, preferred_element_type=spec.acc_dtype)
    w = w.reshape(g, og, cg, t)  # (G, Og, Cg, T), T = kh*kw in row-major tap order
    if spec.layout == "NHWC":
        patches = jnp.stack(taps, axis=3).reshape(n, mh, mw, t, g, cg)
        y = jnp.einsum("nhwtgc,goct->nhwgo", patches, w, **kw)
        y = y.reshape(n, mh, mw, spec.o)
    else:
        patches = jnp.stack(taps, axis=1).reshape(n, t, g, cg, mh, mw)
        y = jnp.einsum("ntgchw,goct->ngohw", patches, w, **kw)
        y = y.reshape(n, spec.o, mh, mw)
    return y.astype(spec.out_dtype)
