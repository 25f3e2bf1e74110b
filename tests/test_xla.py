"""method='xla' (jconv/_method_xla.py): lax's convolution, with the crops lax got wrong."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from jconv._checks import check_conv_args
from jconv._method_xla import conv_xla
from tests.reference import assert_close, conv_numpy


@pytest.mark.usefixtures("on_cpu")
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize(
    "x_shape,k_shape,pads",
    [
        ((2, 4, 11, 3), (5, 4, 3, 1), ((-2, 2), (0, 0))),  # lax on XLA:CPU: values to 1e28
        ((2, 4, 11, 8), (5, 4, 3, 3), ((-2, 2), (1, -1))),
        ((1, 3, 7, 9), (2, 3, 2, 4), ((1, -1), (-3, 2))),
    ],
)
def test_negative_pads_crop_x(x_shape, k_shape, pads, layout):
    """A negative pad (the input gradients' crops where x's padding reaches beyond the
    kernel) against the NumPy loop on x cropped by hand."""
    rng = np.random.default_rng(51)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(k_shape).astype(np.float32)
    spec = check_conv_args(x_shape, k_shape, x_dtype="float32", kernel_dtype="float32")
    spec = dataclasses.replace(spec, pads=pads, layout=layout)
    (top, bottom), (left, right) = pads
    h, wd = x_shape[2:]
    cropped = x[:, :, max(-top, 0) : h - max(-bottom, 0), max(-left, 0) : wd - max(-right, 0)]
    rest = ((max(top, 0), max(bottom, 0)), (max(left, 0), max(right, 0)))
    want = conv_numpy(cropped, w, pads=rest)
    nhwc = layout == "NHWC"
    xin = x.transpose(0, 2, 3, 1) if nhwc else x
    got = np.asarray(jax.jit(lambda x, w: conv_xla(x, w, spec))(xin, w))
    assert_close(got.transpose(0, 3, 1, 2) if nhwc else got, want)
