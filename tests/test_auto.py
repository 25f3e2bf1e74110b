"""method='auto': which lowering the cost model picks, and that it is never 'xla'."""

from __future__ import annotations

import pytest

import jconv
from jconv._auto import choose_method
from jconv._checks import check_conv_args


@pytest.mark.parametrize(
    "x_shape,k_shape,kwargs,expected",
    [
        ((256, 6, 14, 14), (16, 6, 5, 5), {}, "banded"),  # LeNet conv2
        ((256, 1, 28, 28), (6, 1, 5, 5), {"padding": 2}, "banded"),  # LeNet conv1
        ((4, 100, 68, 68), (100, 100, 5, 5), {}, "winograd"),  # the lesson's layer
        ((2, 64, 56, 56), (64, 64, 3, 3), {"padding": 1}, "winograd"),  # ResNet 3x3
        ((4, 64, 56, 56), (128, 64, 3, 3), {"stride": 2, "padding": 1}, "taps"),  # stride 2
        ((2, 64, 56, 56), (64, 64, 3, 3), {"dilation": 2}, "taps"),
        ((2, 64, 56, 56), (64, 64, 7, 7), {}, "taps"),  # beyond F(2, 5)
        ((2, 256, 56, 56), (64, 256, 1, 1), {}, "taps"),  # 1x1
        ((4, 128, 56, 56), (128, 1, 3, 3), {"groups": 128, "padding": 1}, "vmap"),  # depthwise
    ],
)
def test_choice(x_shape, k_shape, kwargs, expected):
    spec = check_conv_args(x_shape, k_shape, x_dtype="float32", kernel_dtype="float32", **kwargs)
    assert choose_method(spec) == expected


def test_auto_runs_the_chosen_lowering():
    """'auto' gives bit for bit what the lowering it names gives."""
    import jax

    x = jax.random.normal(jax.random.key(0), (3, 6, 14, 14))
    w = jax.random.normal(jax.random.key(1), (16, 6, 5, 5))
    assert (jconv.conv2d(x, w) == jconv.conv2d(x, w, method="banded")).all()
