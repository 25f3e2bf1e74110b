"""Every method under every transformation lax's convolution supports, against lax.

One matrix: jconv.METHODS x TRANSFORMATIONS, sampled (see below). Each
transformation is applied to jconv.conv2d(..., method=m) and to
lax.conv_general_dilated (Precision.HIGHEST) and the results compared. The
problem is small (a 2x3 'SAME' convolution, two channels in and out, so that
'banded' and 'winograd' run their own code and a scan can chain it) and the
inputs come from NumPy.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import jconv
from jconv._auto import choose_method
from jconv._checks import check_conv_args
from tests._helpers import assert_runs_own_code, sample_product
from tests.reference import assert_close, conv_lax

RNG = np.random.default_rng(2024)
X = RNG.standard_normal((2, 2, 5, 5)).astype(np.float32)  # N, C, H, W
W = RNG.standard_normal((2, 2, 2, 3)).astype(np.float32)  # O, C, kh, kw
TX, TW = (RNG.standard_normal(a.shape).astype(np.float32) for a in (X, W))  # tangents
CT = RNG.standard_normal(X.shape).astype(np.float32)  # output cotangent ('SAME': y like x)
XS = RNG.standard_normal((3, *X.shape)).astype(np.float32)  # a stack of inputs
WS = RNG.standard_normal((3, *W.shape)).astype(np.float32)  # and of kernels

ConvFn = Callable[[jax.Array, jax.Array], jax.Array]


def loss(conv: ConvFn) -> Callable:
    """A scalar whose second derivatives are not zero: sum(ct * y**2)."""
    return lambda x, w: jnp.sum(CT * conv(x, w) ** 2)


def _scan(conv: ConvFn):
    """Three layers through lax.scan, differentiated with respect to all the kernels."""

    def net(ws):
        def layer(h, w):
            return jnp.tanh(conv(h, w)), None

        return jnp.sum(CT * jax.lax.scan(layer, X, ws)[0])

    return jax.value_and_grad(net)(WS)


def _shard_map(conv: ConvFn):
    """The batch split over two devices; JAX sums the replicated kernel's gradient."""
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:2]), ("data",))

    def local(x, w, ct):  # x: f32[N/2, C, H, W]
        y = conv(x, w)
        grad_w = jax.grad(lambda w: jnp.sum(ct * conv(x, w)))(w)
        return y, grad_w

    f = jax.shard_map(
        local, mesh=mesh, in_specs=(P("data"), P(), P("data")), out_specs=(P("data"), P())
    )
    return jax.jit(f)(X, W, CT)


TRANSFORMATIONS: dict[str, Callable[[ConvFn], object]] = {
    "jit": lambda c: jax.jit(c)(X, W),
    "grad": lambda c: jax.grad(loss(c), argnums=(0, 1))(X, W),
    "vjp": lambda c: jax.vjp(c, X, W)[1](CT),
    "jvp": lambda c: jax.jvp(c, (X, W), (TX, TW)),
    "jacfwd": lambda c: jax.jacfwd(c, argnums=1)(X, W),
    "jacrev": lambda c: jax.jacrev(c, argnums=0)(X[:1], W),
    "hessian": lambda c: jax.hessian(loss(c), argnums=1)(X, W),
    "hvp": lambda c: jax.jvp(jax.grad(loss(c), argnums=(0, 1)), (X, W), (TX, TW))[1],
    "vmap_x": lambda c: jax.vmap(lambda x: c(x, W))(XS),
    "vmap_kernel": lambda c: jax.vmap(lambda w: c(X, w))(WS),
    "vmap_both": lambda c: jax.vmap(c)(XS, WS),
    "vmap_grad": lambda c: jax.vmap(jax.grad(loss(c), argnums=(0, 1)))(XS, WS),
    "linear_transpose_x": lambda c: jax.linear_transpose(lambda x: c(x, W), X)(CT),
    "linear_transpose_kernel": lambda c: jax.linear_transpose(lambda w: c(X, w), W)(CT),
    "remat": lambda c: jax.grad(jax.checkpoint(loss(c)), argnums=(0, 1))(X, W),
    "scan": _scan,
    "eval_shape": lambda c: jax.tree.map(
        lambda s: np.zeros(s.shape, s.dtype), jax.eval_shape(c, X, W)
    ),
    "shard_map": _shard_map,
}


def lax_conv(x, w):
    return conv_lax(x, w, padding="SAME")


@functools.cache
def expected(transformation: str):
    """lax's result, computed once for all methods."""
    return TRANSFORMATIONS[transformation](lax_conv)


# 'xla' is lax itself; 'auto' runs 'banded' on this problem (checked below), so both
# would only repeat a column of the matrix. 'pallas' runs its GPU kernels in Pallas's
# interpret mode here, seconds per compile: test_pallas.py transforms it.
METHODS = [m for m in jconv.METHODS if m not in ("xla", "auto", "pallas")]


def test_auto_runs_banded_here():
    spec = check_conv_args(X.shape, W.shape, x_dtype=X.dtype, kernel_dtype=W.dtype, padding="SAME")
    assert choose_method(spec) == "banded"


@pytest.mark.parametrize("method", METHODS)
def test_each_method_runs_its_own_code_here(method):
    """No method hands this problem to another, forward or backward."""
    conv = lambda x, w: jconv.conv2d(x, w, padding="SAME", method=method)
    assert_runs_own_code(method, conv, X, W)
    assert_runs_own_code(method, jax.grad(loss(conv), argnums=(0, 1)), X, W)


# The whole matrix with `pytest --full-product`; by default each transformation meets two
# of the methods, each method seven or so of the transformations (tests/_helpers.py).
@sample_product("transformation,method", list(TRANSFORMATIONS), METHODS, per=2)
def test_method_under_transformation(method, transformation):
    def conv(x, w):
        return jconv.conv2d(x, w, padding="SAME", method=method, precision="highest")

    got, want = TRANSFORMATIONS[transformation](conv), expected(transformation)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert g.shape == e.shape and g.dtype == e.dtype
        assert_close(g, e)
