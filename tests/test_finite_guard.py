"""The NaN/Inf guard of 'banded' and 'winograd': lax's non-finite values, exact results."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jconv
from tests.reference import assert_close, conv_lax

GUARDED = ["banded", "winograd", "auto"]


def _x_w(key):
    kx, kw = jax.random.split(jax.random.key(key))
    return jax.random.normal(kx, (2, 3, 8, 9)), jax.random.normal(kw, (4, 3, 3, 3))


@pytest.mark.parametrize("method", GUARDED)
def test_inf_in_the_kernel_propagates_like_lax(method):
    x, w = _x_w(20)
    w = w.at[1, 2, 0, 1].set(-jnp.inf)
    y, expected = jconv.conv2d(x, w, padding=1, method=method), conv_lax(x, w, padding=1)
    for test in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(test(y), test(expected))
    assert np.isinf(y).any()


@pytest.mark.parametrize("method", GUARDED)
def test_finite_inputs_whose_sum_overflows_stay_exact(method):
    """The guard's test is a sum; an overflowing sum must only cost speed, never accuracy."""
    x, w = _x_w(21)
    x = x.at[0, 0, 1, 1].set(3e38).at[1, 2, 6, 7].set(3e38)  # sum(x) overflows to Inf
    w = w * 1e-3
    # 'highest': a GPU's default precision rounds float32 operands to TF32
    y, expected = jconv.conv2d(x, w, method=method, precision="highest"), conv_lax(x, w)
    assert np.isfinite(y).all() and np.isfinite(expected).all()
    assert_close(y / 1e36, expected / 1e36)


@pytest.mark.parametrize("method", ["banded", "auto"])
def test_banded_keeps_forward_mode(method):
    """'banded''s guard is a custom JVP: jax.jvp works, and agrees with lax's."""
    x, w = _x_w(22)
    dx = jax.random.normal(jax.random.key(23), x.shape)
    conv = lambda x: jconv.conv2d(x, w, method=method, precision="highest")
    _, got = jax.jvp(conv, (x,), (dx,))
    _, expected = jax.jvp(lambda x: conv_lax(x, w), (x,), (dx,))
    assert_close(got, expected)
