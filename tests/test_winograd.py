"""method='winograd': its matrices, its derivatives and the shapes it hands to 'taps'."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jconv
from jconv import _method_winograd
from jconv._checks import check_conv_args
from jconv._method_winograd import (
    DENSE_KERNEL_TRANSFORM,
    TILE,
    TILE_MAJOR_MAX_TILES,
    _kernel_transform,
    _stacked_transform,
    _tile_grid,
    _tile_major,
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


@pytest.fixture(params=["tile_major", "batch_major"])
def tile_order(request, monkeypatch):
    """Both orders of the float32 GEMMs' tiles (`_tile_major`): the small grids of these
    tests take (th, tw, N, C); with TILE_MAJOR_MAX_TILES at 0 every grid takes
    (N, th, tw, C)."""
    if request.param == "batch_major":
        monkeypatch.setattr(_method_winograd, "TILE_MAJOR_MAX_TILES", 0)
    return request.param


def _gemm_operands(conv, *args) -> list[str]:
    """The operand types of the dot_generals in conv's compiled-for-CPU program."""
    text = jax.jit(conv).lower(*args).as_text()
    return re.findall(r"stablehlo\.dot_general .*: \((tensor<[^>]*>), ", text)


@pytest.mark.parametrize(
    "k,padding", [((3, 3), 3), ((5, 5), ((0, 4), (1, 2))), ((3, 5), "SAME"), ((1, 3), 1)]
)
def test_gradients_against_lax(k, padding, tile_order):
    """Including padding wider than the kernel (the x-gradient's padding goes negative),
    in both tile orders."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 9, 10), np.float32)  # grids of 5 to 7 tiles a side
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
    # the forward pass's GEMMs take the tiles in the order asked for
    th, tw = (-(-m // TILE) for m in y_shape[2:])
    operand = lambda rows: f"tensor<{'x'.join(map(str, rows))}x3xf32>"
    tile_major, batch_major = operand((th, tw, 2)), operand((2, th, tw))
    want, other = (tile_major, batch_major)[:: 1 if tile_order == "tile_major" else -1]
    operands = _gemm_operands(conv, x, w)
    assert want in operands and other not in operands


def test_tile_order_rule():
    """(th, tw, N, C) for float32 GEMMs on grids of at most TILE_MAJOR_MAX_TILES tiles an
    image with a side not a power of two, unless x's batch is split in JAX's explicit
    sharding mode (the kernel gradient could not merge the tiles with it); bfloat16 GEMMs,
    larger grids and powers of two keep (N, th, tw)."""
    spec = lambda dtype: check_conv_args(
        (8, 16, 14, 14), (16, 16, 3, 3), x_dtype=dtype, kernel_dtype=dtype, padding=1
    )
    x = jnp.zeros((8, 16, 16, 16))
    assert _tile_major(spec("float32"), x, (7, 7))
    assert _tile_major(spec("float32"), x, (4, 3))
    assert _tile_major(spec("float32"), x, (TILE_MAJOR_MAX_TILES // 3, 3))
    assert not _tile_major(spec("float32"), x, (TILE_MAJOR_MAX_TILES // 3 + 1, 3))
    assert not _tile_major(spec("float32"), x, (4, 4))
    assert not _tile_major(spec("float32"), x, (8, 2))
    assert not _tile_major(spec("bfloat16"), x, (7, 7))
    assert _tile_major(spec("float16"), x, (7, 7))  # float16 multiplies in float32


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


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
@pytest.mark.parametrize("where", ["batch", "shard_map"])
@needs_8_cpu_devices
@pytest.mark.usefixtures("on_cpu")
def test_kernel_gradient_on_devices(where, dtype):
    """The kernel-gradient products with x's batch split over devices: JAX's explicit
    sharding mode (the product lands where the kernel's sharding says; float32's small grid
    keeps the (N, th, tw) order there), and shard_map (each device's share, summed; float32
    in (th, tw, N) order). bfloat16: one batched product; float32: one per position."""
    rng = np.random.default_rng(12)
    x = jnp.asarray(rng.standard_normal((8, 4, 10, 10)), dtype)  # 5 x 5 tiles
    w = jnp.asarray(rng.standard_normal((6, 4, 3, 3)), dtype)
    conv = lambda x, w: jconv.conv2d(x, w, padding=1, method="winograd")
    if where == "batch":
        assert_split_batch_like_lax(conv, x, w, dtype, padding=1)
    else:
        ct = jnp.asarray(rng.standard_normal((8, 6, 10, 10)), dtype)
        assert_shard_map_like_lax(conv, x, w, ct, dtype, padding=1)
