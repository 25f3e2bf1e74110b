"""method='winograd': its matrices, its derivatives and the shapes it hands to 'taps'."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jconv
from jconv._checks import check_conv_args
from jconv._method_winograd import (
    DENSE_KERNEL_TRANSFORM,
    TILE,
    _kernel_transform,
    _stacked_transform,
    _tile_grid,
    _transform_2d,
    winograd_supported,
)
from jconv._winograd_matrices import winograd_matrices
from tests._cpu import (
    assert_shard_map_like_lax,
    assert_split_batch_like_lax,
    needs_8_cpu_devices,
)
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


@pytest.mark.parametrize("kh,kw", [(3, 3), (2, 2), (2, 3), (5, 4)])
@pytest.mark.parametrize("side", ["input", "output"])
def test_stacked_transform_is_the_written_out_one(kh, kw, side):
    """The kernel gradient's stacked V (BT d B) and dM (A dy AT), two kernels for all
    positions, against the per-position form, with tiles cropped and padded."""
    fh, fw = winograd_matrices(TILE, kh), winograd_matrices(TILE, kw)
    rows, cols = (fh.bt, fw.bt) if side == "input" else (fh.at.T, fw.at.T)
    low, tiles = ((1, -1), (4, 3)) if side == "input" else ((0, 0), (3, 5))
    x = np.random.default_rng(7).standard_normal((2, 9, 7, 5)).astype(np.float32)
    size = (rows.shape[1], cols.shape[1])
    grid = _transform_2d(rows, cols, _tile_grid(jnp.asarray(x), low, tiles, size))
    want = np.stack([np.asarray(a).reshape(-1, 5) for row in grid for a in row])
    got = _stacked_transform(rows, cols, jnp.asarray(x), low, tiles)
    assert got.shape == want.shape
    assert_close(got, want)


# (kernel, padding): 3x3 and 2x2 written-out kernel transforms, a 5x5 one as a product
# (DENSE_KERNEL_TRANSFORM), a non-square kernel with uneven padding
BFLOAT16_CASES = [((3, 3), "SAME"), ((2, 2), "VALID"), ((5, 5), 1), ((2, 3), ((1, 0), (2, 1)))]


@pytest.mark.parametrize("k,padding", BFLOAT16_CASES)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_bfloat16_gradients_against_lax(k, padding, layout):
    """bfloat16 inputs: the transforms in float32, the GEMMs on bfloat16 operands, the
    kernel gradient's as one batched product (`_stacked_transform`), within bfloat16's
    tolerance of lax on the same values in float32."""
    rng = np.random.default_rng(11)
    x = jnp.asarray(rng.standard_normal((2, 6, 9, 10)), jnp.bfloat16)
    w = jnp.asarray(rng.standard_normal((5, 6, *k)), jnp.bfloat16)
    to = (lambda a: a.transpose(0, 2, 3, 1)) if layout == "NHWC" else (lambda a: a)
    kernel = (lambda a: a.transpose(2, 3, 1, 0)) if layout == "NHWC" else (lambda a: a)
    conv = lambda x, w: jconv.conv2d(
        x, w, padding=padding, method="winograd", layout=layout, precision="highest"
    )
    f32 = lambda a: a.astype(jnp.float32)
    ref = lambda x, w: conv_lax(f32(x), f32(w), padding=padding)
    y, vjp = jax.vjp(jax.jit(conv), to(x), kernel(w))
    y_ref, vjp_ref = jax.vjp(ref, x, w)
    assert y.dtype == jnp.bfloat16
    assert_close(y, to(y_ref), jnp.bfloat16)
    ct = jnp.asarray(rng.standard_normal(y_ref.shape), jnp.bfloat16)
    (dx, dw), (dx_ref, dw_ref) = vjp(to(ct)), vjp_ref(f32(ct))
    for got, want in ((dx, to(dx_ref)), (dw, kernel(dw_ref))):
        assert got.dtype == jnp.bfloat16
        assert_close(got, want, jnp.bfloat16, scale=float(jnp.max(jnp.abs(want))) + 1.0)
    # the kernel gradient's GEMMs are one product batched over the transformed positions
    dw_program = jax.jit(lambda x, w, ct: vjp(ct)[1]).lower(to(x), kernel(w), to(ct)).as_text()
    assert "batching_dims = [0] x [0]" in dw_program or "lhs_batch" in dw_program


@pytest.mark.parametrize("where", ["batch", "shard_map"])
@needs_8_cpu_devices
@pytest.mark.usefixtures("on_cpu")
def test_bfloat16_kernel_gradient_on_devices(where):
    """The batched kernel-gradient product with x's batch split over devices: JAX's
    explicit sharding mode (the product lands where the kernel's sharding says), and
    shard_map (each device's share, summed)."""
    rng = np.random.default_rng(12)
    x = jnp.asarray(rng.standard_normal((8, 4, 8, 8)), jnp.bfloat16)
    w = jnp.asarray(rng.standard_normal((6, 4, 3, 3)), jnp.bfloat16)
    conv = lambda x, w: jconv.conv2d(x, w, padding=1, method="winograd")
    if where == "batch":
        assert_split_batch_like_lax(conv, x, w, jnp.bfloat16, padding=1)
    else:
        ct = jnp.asarray(rng.standard_normal((8, 6, 8, 8)), jnp.bfloat16)
        assert_shard_map_like_lax(conv, x, w, ct, jnp.bfloat16, padding=1)
