"""Every method under every transformation lax's convolution supports, against lax.

One matrix: jconv.METHODS x TRANSFORMATIONS, sampled (all of it with
`--full-product`), each transformation under several methods. Each
transformation is applied to jconv.conv2d(..., method=m) and to
lax.conv_general_dilated (Precision.HIGHEST), inside one jit whose arguments are
the inputs (one compiled program a case), and the results compared. The
problem is small (a 2x3 'SAME' convolution, two channels in and out, so that
'banded' and 'winograd' run their own code and a scan can chain it) and the
inputs come from NumPy.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import jconv
from jconv._auto import BANDED_GRADIENTS, TAPS_BANDED_GRADIENTS, choose_method
from jconv._checks import check_conv_args
from tests._helpers import assert_runs_own_code, lowerings_run, sample_product
from tests.reference import assert_close, conv_lax


class Data(NamedTuple):
    """The arrays every transformation takes: arguments of its compiled program."""

    x: np.ndarray  # N, C, H, W
    w: np.ndarray  # O, C, kh, kw
    tx: np.ndarray  # tangents
    tw: np.ndarray
    ct: np.ndarray  # output cotangent ('SAME': y like x)
    xs: np.ndarray  # a stack of inputs
    ws: np.ndarray  # and of kernels


RNG = np.random.default_rng(2024)
X = RNG.standard_normal((2, 2, 5, 5)).astype(np.float32)
W = RNG.standard_normal((2, 2, 2, 3)).astype(np.float32)
DATA = Data(
    X,
    W,
    *(RNG.standard_normal(a.shape).astype(np.float32) for a in (X, W, X)),
    RNG.standard_normal((3, *X.shape)).astype(np.float32),
    RNG.standard_normal((3, *W.shape)).astype(np.float32),
)

ConvFn = Callable[[jax.Array, jax.Array], jax.Array]


def loss(conv: ConvFn, ct) -> Callable:
    """A scalar whose second derivatives are not zero: sum(ct * y**2)."""
    return lambda x, w: jnp.sum(ct * conv(x, w) ** 2)


def _scan(conv: ConvFn, d: Data):
    """Three layers through lax.scan, differentiated with respect to all the kernels."""

    def net(ws):
        def layer(h, w):
            return jnp.tanh(conv(h, w)), None

        return jnp.sum(d.ct * jax.lax.scan(layer, d.x, ws)[0])

    return jax.value_and_grad(net)(d.ws)


def _shard_map(conv: ConvFn, d: Data):
    """The batch split over two devices; JAX sums the replicated kernel's gradient."""
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:2]), ("data",))

    def local(x, w, ct):  # x: f32[N/2, C, H, W]
        y = conv(x, w)
        grad_w = jax.grad(lambda w: jnp.sum(ct * conv(x, w)))(w)
        return y, grad_w

    f = jax.shard_map(
        local, mesh=mesh, in_specs=(P("data"), P(), P("data")), out_specs=(P("data"), P())
    )
    return f(d.x, d.w, d.ct)


TRANSFORMATIONS: dict[str, Callable[[ConvFn, Data], object]] = {
    "jit": lambda c, d: jax.jit(c)(d.x, d.w),
    "grad": lambda c, d: jax.grad(loss(c, d.ct), argnums=(0, 1))(d.x, d.w),
    "vjp": lambda c, d: jax.vjp(c, d.x, d.w)[1](d.ct),
    "jvp": lambda c, d: jax.jvp(c, (d.x, d.w), (d.tx, d.tw)),
    "jacfwd": lambda c, d: jax.jacfwd(c, argnums=1)(d.x, d.w),
    "jacrev": lambda c, d: jax.jacrev(c, argnums=0)(d.x[:1], d.w),
    "hessian": lambda c, d: jax.hessian(loss(c, d.ct), argnums=1)(d.x, d.w),
    "hvp": lambda c, d: jax.jvp(jax.grad(loss(c, d.ct), argnums=(0, 1)), (d.x, d.w), (d.tx, d.tw))[
        1
    ],
    "vmap_x": lambda c, d: jax.vmap(lambda x: c(x, d.w))(d.xs),
    "vmap_kernel": lambda c, d: jax.vmap(lambda w: c(d.x, w))(d.ws),
    "vmap_both": lambda c, d: jax.vmap(c)(d.xs, d.ws),
    "vmap_grad": lambda c, d: jax.vmap(jax.grad(loss(c, d.ct), argnums=(0, 1)))(d.xs, d.ws),
    "linear_transpose_x": lambda c, d: jax.linear_transpose(lambda x: c(x, d.w), d.x)(d.ct),
    "linear_transpose_kernel": lambda c, d: jax.linear_transpose(lambda w: c(d.x, w), d.w)(d.ct),
    "remat": lambda c, d: jax.grad(jax.checkpoint(loss(c, d.ct)), argnums=(0, 1))(d.x, d.w),
    "scan": _scan,
    "eval_shape": lambda c, d: jax.tree.map(
        lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(c, d.x, d.w)
    ),
    "shard_map": _shard_map,
}


def transformed(transformation: str, conv: ConvFn, data: Data = DATA):
    """The transformation of conv, applied to data (DATA) as one compiled program."""
    return jax.jit(lambda d: TRANSFORMATIONS[transformation](conv, d))(data)


def lax_conv(x, w):
    return conv_lax(x, w, padding="SAME")


@functools.cache
def expected(transformation: str):
    """lax's result, computed once for all methods."""
    return transformed(transformation, lax_conv)


# 'xla' is lax itself, and would only repeat a column of the matrix. 'auto' runs lax's
# forward pass with 'banded''s gradients on this problem (checked below), a lowering of
# its own. 'pallas' runs its GPU kernels in Pallas's interpret mode here, seconds per
# compile: test_pallas.py transforms it.
METHODS = [m for m in jconv.METHODS if m not in ("xla", "pallas")]


# One input channel, three outputs: 'auto' runs 'taps''s elementwise forward pass with
# 'banded''s gradients there (TAPS_BANDED_GRADIENTS), a lowering of its own too.
X1 = RNG.standard_normal((2, 1, 5, 5)).astype(np.float32)
W1 = RNG.standard_normal((3, 1, 2, 3)).astype(np.float32)
DATA1 = Data(
    X1,
    W1,
    *(RNG.standard_normal(a.shape).astype(np.float32) for a in (X1, W1)),
    RNG.standard_normal((2, 3, 5, 5)).astype(np.float32),
    RNG.standard_normal((3, *X1.shape)).astype(np.float32),
    RNG.standard_normal((3, *W1.shape)).astype(np.float32),
)


@pytest.mark.usefixtures("on_cpu")  # the CPU's rule
@pytest.mark.parametrize("transformation", [t for t in TRANSFORMATIONS if t != "scan"])
def test_auto_on_one_input_channel_under_transformation(transformation):
    """Every transformation but a scan (whose layers chain C -> C) of 'auto' on one input
    channel, against lax at HIGHEST."""
    spec = check_conv_args(
        X1.shape, W1.shape, x_dtype="float32", kernel_dtype="float32", padding="SAME"
    )
    assert choose_method(spec) == TAPS_BANDED_GRADIENTS

    def conv(x, w):
        return jconv.conv2d(x, w, padding="SAME", precision="highest")

    if transformation == "grad":
        assert lowerings_run(jax.grad(loss(conv, DATA1.ct), argnums=(0, 1)), X1, W1) == {
            TAPS_BANDED_GRADIENTS
        }
    got, want = (
        transformed(transformation, conv, DATA1),
        transformed(transformation, lax_conv, DATA1),
    )
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert g.shape == e.shape and g.dtype == e.dtype
        assert_close(g, e)


def test_auto_runs_banded_gradients_here():
    spec = check_conv_args(X.shape, W.shape, x_dtype=X.dtype, kernel_dtype=W.dtype, padding="SAME")
    assert choose_method(spec) == BANDED_GRADIENTS
    conv = lambda x, w: jconv.conv2d(x, w, padding="SAME")
    assert lowerings_run(conv, X, W) == {BANDED_GRADIENTS}
    assert lowerings_run(jax.grad(loss(conv, DATA.ct), argnums=(0, 1)), X, W) == {BANDED_GRADIENTS}


@pytest.mark.parametrize("method", [m for m in METHODS if m != "auto"])
def test_each_method_runs_its_own_code_here(method):
    """No method hands this problem to another, forward or backward."""
    conv = lambda x, w: jconv.conv2d(x, w, padding="SAME", method=method)
    assert_runs_own_code(method, conv, X, W)
    assert_runs_own_code(method, jax.grad(loss(conv, DATA.ct), argnums=(0, 1)), X, W)


# The matrix is declared whole; by default half of it runs, 9 transformations for each
# method, which together take every transformation two or three times (tests/_helpers.py,
# sample_product); `pytest --full-product` runs all 108 cases.
@sample_product("method,transformation", METHODS, list(TRANSFORMATIONS), per=9)
def test_method_under_transformation(method, transformation):
    def conv(x, w):
        return jconv.conv2d(x, w, padding="SAME", method=method, precision="highest")

    got, want = transformed(transformation, conv), expected(transformation)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert g.shape == e.shape and g.dtype == e.dtype
        assert_close(g, e)
