"""method='xla': jax.lax.conv_general_dilated itself, the baseline jconv is measured against."""

from __future__ import annotations

import jax

from jconv._checks import ConvSpec
from jconv._layouts import LAYOUT_INFO
from jconv._padding import pad_input, zero_pad_or_crop
from jconv._typing import Array


def conv_xla(x: Array, w: Array, spec: ConvSpec) -> Array:
    """x: batched, spec.layout; w: (O, C/groups, kh, kw) -> batched output, spec.layout.

    A negative pad (a crop: the input gradients of XLA_EIGEN and WINOGRAD_1D where x's
    padding reaches beyond the kernel) is cropped off x first: XLA:CPU (jax 0.10.2) gave
    wrong values, up to 1e28, for lax's convolution with a negative padding on few
    channels, a 3x1 kernel with (-2, 2) among them (tests/test_xla.py)."""
    pads = spec.pads
    if spec.padding_mode != "zeros":  # lax only pads with zeros: fill the border first
        x, pads = pad_input(x, spec), ((0, 0), (0, 0))
    elif spec.input_dilation == (1, 1) and min(p for side in pads for p in side) < 0:
        crops = [(0, 0)] * 4
        for axis, (low, high) in zip(LAYOUT_INFO[spec.layout].spatial_axes, pads):
            crops[axis] = (min(low, 0), min(high, 0))
        x = zero_pad_or_crop(x, crops)
        (top, bottom), (left, right) = pads
        pads = ((max(top, 0), max(bottom, 0)), (max(left, 0), max(right, 0)))
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
