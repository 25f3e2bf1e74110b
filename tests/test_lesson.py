"""The lesson's functions: corr2d, corr2d_multi_in, corr2d_multi_in_out, corr2d_multi_in_out_1x1."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jconv
from tests._helpers import random_array
from tests.reference import assert_close, conv_numpy


def randn(seed, shape):
    return random_array(shape, seed)


def test_corr2d_lesson_example():
    """d2l's worked example: X = 0..8 in 3x3, K = [[0, 1], [2, 3]]."""
    y = jconv.corr2d(jnp.arange(9.0).reshape(3, 3), jnp.array([[0.0, 1.0], [2.0, 3.0]]))
    np.testing.assert_array_equal(y, [[19.0, 25.0], [37.0, 43.0]])


@pytest.mark.parametrize("x_shape,k_shape", [((6, 8), (3, 2)), ((5, 5), (5, 5)), ((4, 7), (1, 1))])
def test_corr2d_matches_numpy(x_shape, k_shape):
    x, k = randn(0, x_shape), randn(1, k_shape)
    y = jconv.corr2d(x, k)
    assert y.shape == (x_shape[0] - k_shape[0] + 1, x_shape[1] - k_shape[1] + 1)
    assert_close(y, conv_numpy(x[None, None], k[None, None])[0, 0])


def test_corr2d_does_not_flip_the_kernel():
    """A kernel with a single 1 at (0, 0) picks the window's top-left pixel: no flip."""
    x = randn(2, (5, 6))
    k = jnp.zeros((2, 3)).at[0, 0].set(1.0)
    np.testing.assert_array_equal(jconv.corr2d(x, k), x[:4, :4])


def test_corr2d_multi_in_is_sum_of_corr2d():
    x, k = randn(3, (3, 6, 7)), randn(4, (3, 2, 3))
    expected = sum(jconv.corr2d(xi, ki) for xi, ki in zip(x, k))
    assert_close(jconv.corr2d_multi_in(x, k), expected)
    assert_close(jconv.corr2d_multi_in(x, k), conv_numpy(x[None], k[None])[0, 0])


def test_corr2d_multi_in_out_stacks_output_channels():
    x, k = randn(5, (3, 6, 6)), randn(6, (4, 3, 2, 2))
    y = jconv.corr2d_multi_in_out(x, k)
    assert y.shape == (4, 5, 5)
    for o in range(4):
        assert_close(y[o], jconv.corr2d_multi_in(x, k[o]))
    assert_close(y, conv_numpy(x[None], k)[0])


def test_lesson_1x1_check():
    """The lesson's own check: a (2, 3, 1, 1) kernel on a random 3x3x3 input."""
    x, k = randn(7, (3, 3, 3)), randn(8, (2, 3, 1, 1))
    y1 = jconv.corr2d_multi_in_out_1x1(x, k)
    y2 = jconv.corr2d_multi_in_out(x, k)
    assert y1.shape == y2.shape == (2, 3, 3)
    assert float(jnp.abs(y1 - y2).sum()) < 1e-5


def test_1x1_is_one_matrix_product():
    x, k = randn(9, (5, 4, 6)), randn(10, (3, 5, 1, 1))
    jaxpr = jax.make_jaxpr(jconv.corr2d_multi_in_out_1x1)(x, k)
    prims = [e.primitive.name for e in jaxpr.eqns]
    assert prims.count("dot_general") == 1 and "conv_general_dilated" not in prims
    assert_close(jconv.corr2d_multi_in_out_1x1(x, k), conv_numpy(x[None], k)[0])


def test_corr2d_is_vectorised_over_taps():
    """One multiply per kernel tap, independent of the output size: no per-pixel ops."""
    small = jax.make_jaxpr(jconv.corr2d)(randn(0, (6, 6)), randn(1, (3, 2)))
    large = jax.make_jaxpr(jconv.corr2d)(randn(0, (60, 60)), randn(1, (3, 2)))
    assert len(small.eqns) == len(large.eqns)
    assert sum(e.primitive.name == "mul" for e in large.eqns) == 6


FUNCTIONS = [
    (jconv.corr2d, (6, 7), (2, 3)),
    (jconv.corr2d_multi_in, (3, 6, 7), (3, 2, 3)),
    (jconv.corr2d_multi_in_out, (3, 6, 7), (2, 3, 2, 3)),
    (jconv.corr2d_multi_in_out_1x1, (3, 6, 7), (2, 3, 1, 1)),
]


@pytest.mark.parametrize("fn,x_shape,k_shape", FUNCTIONS, ids=lambda v: getattr(v, "__name__", ""))
def test_jit_vmap_grad(fn, x_shape, k_shape):
    x, k = randn(11, x_shape), randn(12, k_shape)
    y = fn(x, k)
    assert_close(jax.jit(fn)(x, k), y)
    xs = jnp.stack([x, 2.0 * x])
    # vmap and grad each as one compiled program (op by op, each of the lesson's small
    # operations would compile on its own); the eager call above is the user's
    assert_close(jax.jit(jax.vmap(fn, in_axes=(0, None)))(xs, k)[1], 2.0 * y)
    # gradients against the same function written with lax (independent of jconv)
    x4 = x.reshape((1,) * (4 - x.ndim) + x.shape) if x.ndim < 4 else x
    k4 = k.reshape((1,) * (4 - k.ndim) + k.shape)

    def via_lax(x, k):
        out = jax.lax.conv(
            x.reshape(x4.shape), k.reshape(k4.shape), (1, 1), "VALID", precision="highest"
        )
        return out.reshape(y.shape)

    cot = randn(13, y.shape)
    got = jax.jit(jax.grad(lambda x, k: jnp.sum(fn(x, k) * cot), (0, 1)))(x, k)
    want = jax.grad(lambda x, k: jnp.sum(via_lax(x, k) * cot), (0, 1))(x, k)
    for g, e in zip(got, want):
        assert_close(g, e)


@pytest.mark.parametrize(
    "fn,x,k,match",
    [
        (jconv.corr2d, (3, 3, 3), (2, 2), r"x must have shape \(nh, nw\).*\(3, 3, 3\)"),
        (jconv.corr2d, (3, 3), (4, 2), r"kernel spatial size \(4, 2\)"),
        (jconv.corr2d_multi_in, (3, 5, 5), (2, 2, 2), "x has 3 input channels.*k has 2"),
        (jconv.corr2d_multi_in_out, (3, 5, 5), (4, 2, 2, 2), "x has 3 input channels"),
        (jconv.corr2d_multi_in_out_1x1, (3, 5, 5), (4, 3, 2, 1), r"\(4, 3, 1, 1\)"),
    ],
)
def test_bad_input(fn, x, k, match):
    with pytest.raises(ValueError, match=match):
        fn(randn(0, x), randn(1, k))


def test_integer_input_refused():
    with pytest.raises(TypeError, match="x has dtype int32; jconv supports float16"):
        jconv.corr2d(jnp.ones((3, 3), jnp.int32), jnp.ones((2, 2)))
