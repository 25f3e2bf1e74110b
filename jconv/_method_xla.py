"""method='xla': jax.lax.conv_general_dilated itself, the baseline jconv is measured against."""

from __future__ import annotations

import jax

from jconv._checks import ConvSpec
from jconv._padding import pad_input
from jconv._typing import Array


def conv_xla(x: Array, w: Array, spec: ConvSpec) -> Array:
    """x: batched, spec.layout; w: (O, C/groups, kh, kw) -> batched output, spec.layout."""
    pads = spec.pads
    if spec.padding_mode != "zeros":  # lax only pads with zeros: fill the border first
        x, pads = pad_input(x, spec), ((0, 0), (0, 0))
    if spec.layout == "NHWC":
        w, kernel_dims = w.transpose(2, 3, 1, 0), "HWIO"
    else:
        kernel_dims = "OIHW"
    y = jax.lax.conv_general_dilated(
        x,
        w,
        window_strides=spec.stride,
        padding=pads,
        lhs_dilation=spec.input_dilation,
        rhs_dilation=spec.dilation,
        dimension_numbers=(spec.layout, kernel_dims, spec.layout),
        feature_group_count=spec.groups,
        precision=spec.precision,
        preferred_element_type=spec.preferred_element_type,
    )
    return y.astype(spec.out_dtype)
