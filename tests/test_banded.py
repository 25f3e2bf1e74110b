"""method='banded': both ways of cutting the block windows, against lax, forward and gradients.

Up to MAX_BLOCK_SLICES block windows they are sliced one by one; beyond, by shift
(jconv/_method_banded.py). tests/test_conv2d.py covers the first on its configurations;
here, problems wide enough for the second.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import jconv
from jconv._checks import check_conv_args
from jconv._method_banded import MAX_BLOCK_SLICES, banded_unrolled
from tests.reference import assert_close, conv_lax


@pytest.mark.parametrize(
    "x_shape,k_shape,kwargs",
    [
        ((1, 2, 4, 124), (32, 2, 3, 3), {"padding": "SAME"}),  # MIN_BLOCK columns per block
        ((2, 3, 5, 1000), (8, 3, 2, 3), {"stride": (2, 3), "padding": 1}),  # 4 per block
        ((1, 4, 6, 300), (6, 2, 3, 2), {"dilation": (2, 3), "groups": 2}),
    ],
)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_windows_cut_by_shift(x_shape, k_shape, kwargs, layout):
    spec = check_conv_args(x_shape, k_shape, x_dtype="float32", kernel_dtype="float32", **kwargs)
    assert banded_unrolled(spec) > MAX_BLOCK_SLICES
    rng = np.random.default_rng(11)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(k_shape).astype(np.float32)
    if layout == "NHWC":
        x, w = x.transpose(0, 2, 3, 1), w.transpose(2, 3, 1, 0)
    conv = lambda x, w: jconv.conv2d(
        x, w, method="banded", layout=layout, precision="highest", **kwargs
    )
    ref = lambda x, w: conv_lax(x, w, layout=layout, **kwargs)
    y, vjp = jax.vjp(conv, x, w)
    y_ref, vjp_ref = jax.vjp(ref, x, w)
    assert_close(y, y_ref)
    ct = rng.standard_normal(y.shape).astype(np.float32)
    for got, want in zip(vjp(ct), vjp_ref(ct)):
        assert_close(got, want)
