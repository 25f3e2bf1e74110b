"""jconv/_windows.py: each tap's window of a zero-padded input, padded once or per tap."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from jconv._checks import check_conv_args
from jconv._layouts import LAYOUT_INFO
from jconv._padding import zero_pad_or_crop
from jconv._windows import tap_window, zero_padded_tap_window

# (x shape NCHW, kernel OIHW, keyword arguments): 'SAME', stride, dilation, asymmetric
# padding, VALID; each also with a crop (negative padding, which conv2d refuses but the
# sub-pixel phases of a transposed convolution make, jconv/_subpixel.py)
CASES = [
    ((2, 3, 7, 9), (3, 1, 3, 3), {"groups": 3, "padding": "SAME"}),
    ((1, 2, 8, 6), (4, 1, 3, 2), {"groups": 2, "stride": (2, 1), "padding": ((1, 0), (2, 1))}),
    ((2, 2, 9, 9), (2, 1, 3, 3), {"groups": 2, "dilation": (2, 1), "padding": 2}),
    ((1, 3, 11, 10), (3, 1, 5, 5), {"groups": 3, "stride": 2, "dilation": (1, 2), "padding": 1}),
    ((1, 2, 9, 8), (2, 2, 3, 3), {"stride": (1, 3), "padding": ((1, 2), (1, 1))}),
    ((2, 1, 6, 7), (4, 1, 2, 3), {"padding": "VALID"}),
]


@pytest.mark.parametrize("crop", [False, True])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_per_tap_padding_gives_the_padded_input_windows(case, layout, crop):
    x_shape, k_shape, kwargs = CASES[case]
    if layout == "NHWC":
        x_shape = (x_shape[0], x_shape[2], x_shape[3], x_shape[1])
        k_shape = (k_shape[2], k_shape[3], k_shape[1], k_shape[0])
    spec = check_conv_args(
        x_shape, k_shape, x_dtype="float32", kernel_dtype="float32", layout=layout, **kwargs
    )
    if crop:  # a row cut off the top, a column off the right
        (top, bottom), (left, right) = spec.pads
        spec = dataclasses.replace(spec, pads=((top - 1, bottom), (left, right - 1)))
        assert min(spec.out_hw) > 0
    x = np.random.default_rng(case).standard_normal(x_shape).astype(np.float32)
    widths = [(0, 0)] * 4
    for axis, pads in zip(LAYOUT_INFO[layout].spatial_axes, spec.pads):
        widths[axis] = pads
    padded = zero_pad_or_crop(x, widths)  # x padded (or cropped) once
    for i in range(spec.kh):
        for j in range(spec.kw):
            want = tap_window(padded, spec, i, j)
            got = zero_padded_tap_window(x, spec, i, j)
            assert got.shape == want.shape
            np.testing.assert_array_equal(got, want)  # the same values, nothing computed
