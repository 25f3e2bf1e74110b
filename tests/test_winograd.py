"""method='winograd': its matrices, its derivatives and the shapes it hands to 'taps'."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jconv
from jconv._checks import check_conv_args
from jconv._method_winograd import DENSE_KERNEL_TRANSFORM, _kernel_transform, winograd_supported
from jconv._winograd_matrices import winograd_matrices
from tests._helpers import assert_runs_own_code
from tests.reference import assert_close, conv_lax


@pytest.mark.parametrize("m,r", [(2, 1), (2, 2), (2, 3), (2, 4), (2, 5), (4, 3), (3, 2)])
def test_matrices_compute_a_correlation(m, r):
    at, g, bt = winograd_matrices(m, r)
    assert at.shape == (m, m + r - 1) and g.shape == (m + r - 1, r) and bt.shape == (m + r - 1,) * 2
    rng = np.random.default_rng(m * 10 + r)
    for _ in range(3):
        d, k = rng.normal(size=m + r - 1), rng.normal(size=r)
        np.testing.assert_allclose(
            at @ ((g @ k) * (bt @ d)), np.correlate(d, k, "valid"), atol=1e-12
        )


def test_f23_matrices_are_the_known_ones():
    """F(2, 3) from the points 0, 1, -1: entries 0, +-1 and +-1/2 only."""
    at, g, bt = winograd_matrices(2, 3)
    for matrix in (at, g, bt):
        assert set(np.unique(np.abs(matrix))) <= {0.0, 0.5, 1.0}


def test_too_many_points_is_refused():
    with pytest.raises(ValueError, match="points"):
        winograd_matrices(4, 6)


@pytest.mark.parametrize("kh,kw", [(2, 2), (3, 3), (3, 5), (4, 4), (5, 5), (5, 2)])
def test_kernel_transforms_match_numpy(kh, kw):
    """U = G g GT and the kernel gradient's GT dU G, written out (below 4x4) or as one
    Kronecker GEMM (from 4x4 on), against NumPy's einsum in float64."""
    rng = np.random.default_rng(kh * 10 + kw)
    gh, gw = winograd_matrices(2, kh).g, winograd_matrices(2, kw).g
    k = rng.standard_normal((kh, kw, 3, 4)).astype(np.float32)
    u = np.asarray(_kernel_transform(gh, gw, jnp.asarray(k)))
    np.testing.assert_allclose(u, np.einsum("pi,qj,ijco->pqco", gh, gw, k), rtol=1e-6, atol=1e-6)
    du = rng.standard_normal(u.shape).astype(np.float32)
    grid = [[jnp.asarray(a) for a in row] for row in du]
    dw = np.asarray(_kernel_transform(gh.T, gw.T, grid))
    want = np.einsum("pi,qj,pqco->ijco", gh, gw, du)
    np.testing.assert_allclose(dw, want, rtol=1e-6, atol=1e-6)
    assert (max(kh, kw) >= DENSE_KERNEL_TRANSFORM) == ((kh, kw) in [(4, 4), (5, 5), (3, 5), (5, 2)])


@pytest.mark.parametrize(
    "kwargs,supported",
    [
        ({}, True),
        ({"stride": 2}, False),
        ({"dilation": 2}, False),
        ({"groups": 2}, False),
    ],
)
def test_supported_shapes(kwargs, supported):
    spec = check_conv_args(
        (2, 4, 9, 9), (6, 4 // kwargs.get("groups", 1), 3, 3), x_dtype="float32", **kwargs
    )
    assert winograd_supported(spec) == supported


@pytest.mark.parametrize(
    "k,padding", [((3, 3), 3), ((5, 5), ((0, 4), (1, 2))), ((3, 5), "SAME"), ((1, 3), 1)]
)
def test_gradients_against_lax(k, padding):
    """Including padding wider than the kernel (the x-gradient's padding goes negative)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 7, 8), np.float32)
    w = rng.standard_normal((4, 3, *k), np.float32)
    y_shape = jax.eval_shape(lambda: conv_lax(x, w, padding=padding)).shape
    ct = rng.standard_normal(y_shape, np.float32)

    def loss(conv):
        return lambda x, w: jnp.vdot(conv(x, w), ct)

    conv = lambda x, w: jconv.conv2d(x, w, padding=padding, method="winograd", precision="highest")
    lax_grads = jax.grad(loss(lambda x, w: conv_lax(x, w, padding=padding)), (0, 1))
    got, expected = jax.jit(lambda *a: (jax.grad(loss(conv), (0, 1))(*a), lax_grads(*a)))(x, w)
    for g, e in zip(got, expected):
        assert_close(g, e)
    assert_runs_own_code("winograd", jax.grad(loss(conv), (0, 1)), x, w)


def test_check_grads_second_order():
    """Its derivatives, forward and reverse, are themselves differentiable, to second order."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        x, w = rng.standard_normal((1, 2, 5, 6)), rng.standard_normal((3, 2, 3, 3))
        conv = lambda x, w: jconv.conv2d(x, w, padding=1, method="winograd")
        check_grads(conv, (x, w), order=2, modes=["fwd", "rev"])
        assert_runs_own_code("winograd", conv, x, w)
