"""What several test files share: random inputs, tree comparisons, error capture, what
a program runs (its jaxpr's equations, which of jconv's lowerings ran), and sampled
parameter products.

Inputs come from NumPy (`np.random.default_rng`): jax.random compiles a program per
shape, and the matrices of tests/test_conv2d.py draw many shapes.
"""

from __future__ import annotations

import functools
import itertools
import os
import random
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

# --- inputs ----------------------------------------------------------------------------


def random_array(shape: tuple[int, ...], seed: int = 1, dtype: Any = np.float32) -> np.ndarray:
    """Standard normal values of `shape` from NumPy's generator `seed`, cast to dtype
    (bfloat16 included: NumPy casts to JAX's ml_dtypes)."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32).astype(dtype)


# --- comparisons -------------------------------------------------------------------------


def assert_trees_close(actual: Any, expected: Any, tol: float = 1e-5) -> None:
    """Same tree, shapes and dtypes; values within tol, relative and absolute (the absolute
    part scaled by the largest expected magnitude plus one)."""
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        assert a.shape == e.shape and a.dtype == e.dtype
        a, e = np.asarray(a, np.float32), np.asarray(e, np.float32)
        scale = float(np.max(np.abs(e), initial=0.0)) + 1.0
        np.testing.assert_allclose(a, e, rtol=tol, atol=tol * scale)


def assert_trees_equal(a: Any, b: Any) -> None:
    """Same tree, shapes and dtypes, and the same bits."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert u.dtype == v.dtype and u.shape == v.shape
        u, v = np.asarray(u), np.asarray(v)
        if u.dtype.itemsize < 4:  # bfloat16 and float16 compared as the float32 they widen to
            u, v = u.astype(np.float32), v.astype(np.float32)
        np.testing.assert_array_equal(u, v)


def error_of(fn: Callable[[], Any]) -> tuple[type, str] | None:
    """(type, message) of what fn() raises, or None: to compare two libraries' errors."""
    try:
        with warnings.catch_warnings():  # numpy warns on the way to some of lax's errors
            warnings.simplefilter("ignore")
            fn()
    except Exception as e:  # comparing whatever each raises
        return type(e), str(e)
    return None


# --- what a program runs -----------------------------------------------------------------


def equations(jaxpr: Any) -> Iterator[Any]:
    """Every equation of a jaxpr and of the jaxprs inside it (jit bodies, cond branches,
    custom JVP/VJP rules: any parameter that is a jaxpr or a tuple of them)."""
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else [value]:
                sub = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr holds its Jaxpr
                if hasattr(sub, "eqns"):
                    yield from equations(sub)


def program(fn: Callable, *args: Any) -> list[Any]:
    """The equations of fn(*args)'s jaxpr, nested ones included."""
    return list(equations(jax.make_jaxpr(fn)(*args).jaxpr))


PRODUCTS = ("dot_general", "conv_general_dilated")


def products(fn: Callable, *args: Any) -> list[Any]:
    """The matrix-product and convolution equations of fn(*args)."""
    return [eqn for eqn in program(fn, *args) if eqn.primitive.name in PRODUCTS]


def lowerings_run(fn: Callable, *args: Any) -> set[str]:
    """Which of jconv's lowerings that run through a primitive of their own fn(*args) runs:
    'banded' and 'winograd' (jconv/_conv_primitive.py, whose parameters name the
    lowering: 'taps' where they hand a shape to it) and 'pallas'."""
    ran = set()
    for eqn in program(fn, *args):
        if eqn.primitive.name == "jconv_conv":
            ran.add(eqn.params["op"].lowering.name)
        elif eqn.primitive.name == "jconv_pallas_conv":
            ran.add("pallas")
    return ran


PRIMITIVE_LOWERINGS = ("banded", "winograd", "pallas")


def assert_runs_own_code(method: str, fn: Callable, *args: Any) -> None:
    """fn(*args), a convolution by `method`, runs that method's own code: 'banded',
    'winograd' and 'pallas' their primitive (and no other lowering's), 'taps' its own
    member or none (one input channel per group runs through the primitive, as
    jconv/_method_depthwise.py), the other methods none of those (nothing hands a shape
    to them)."""
    ran = lowerings_run(fn, *args)
    if method == "taps":
        assert ran <= {"taps"}, (method, ran)
        return
    assert ran == ({method} if method in PRIMITIVE_LOWERINGS else set()), (method, ran)


# --- sampled products --------------------------------------------------------------------

FULL_PRODUCT_ENV = "JCONV_FULL_PRODUCT"  # set by `pytest --full-product` (tests/conftest.py)


def assert_auto_runs(lowering: str, x: Any, w: Any, **kwargs: Any) -> None:
    """'auto' (jconv.conv2d with kwargs) on x and w runs `lowering`, forward and with both
    gradients, and agrees with lax on the same values in float32 within x's dtype's
    tolerance: y, and the gradients of sum(y**2) in their inputs' dtype."""
    import jconv
    from tests.reference import assert_close, conv_lax

    dtype = jnp.asarray(x).dtype
    conv = lambda x, w: jconv.conv2d(x, w, **kwargs)
    loss = lambda conv: lambda x, w: jnp.sum(conv(x, w).astype(jnp.float32) ** 2)
    assert lowerings_run(conv, x, w) == {lowering}
    assert lowerings_run(jax.grad(loss(conv), (0, 1)), x, w) == {lowering}
    f32 = lambda a: a.astype(jnp.float32)
    ref = lambda x, w: conv_lax(f32(x), f32(w), **kwargs)
    assert_close(jax.jit(conv)(x, w), ref(x, w), dtype)
    grads = jax.jit(jax.grad(loss(conv), (0, 1)))(x, w)
    for got, want in zip(grads, jax.grad(loss(ref), (0, 1))(x, w)):
        assert got.dtype == dtype
        assert_close(got, want, dtype, scale=float(jnp.max(jnp.abs(want))) + 1.0)


@functools.partial(jax.jit, static_argnums=0)
def transformation_results(conv: Callable, x: Any, w: Any, ct: Any, tx: Any, tw: Any) -> dict:
    """conv(x, w) under the transformations a lowering must support, jitted: the value,
    both gradients of <conv(x, w), ct>, jvp along (tx, tw), vmap of x and of the kernel
    (stacked with tw), the transpose in x, a second derivative and remat. Compare a
    lowering's with lax's (tests/reference.py's conv_lax) key by key."""
    loss = lambda x, w: jnp.vdot(conv(x, w), ct)
    return {
        "y": conv(x, w),
        "grad": jax.grad(loss, (0, 1))(x, w),
        "jvp": jax.jvp(conv, (x, w), (tx, tw))[1],
        "vmap x": jax.vmap(conv, in_axes=(0, None))(x[:, None], w),
        "vmap w": jax.vmap(conv, in_axes=(None, 0))(x, jnp.stack([w, tw])),
        "transpose": jax.linear_transpose(lambda x: conv(x, w), x)(ct),
        "second": jax.grad(lambda x: jnp.sum(jax.grad(loss, 1)(x, w) ** 2))(x),
        "remat": jax.grad(jax.checkpoint(loss), (0, 1))(x, w),
    }


def full_product() -> bool:
    """Whether to run every case of the declared products (`--full-product`)."""
    return os.environ.get(FULL_PRODUCT_ENV, "") not in ("", "0")


def sample_product(
    argnames: str,
    *axes: Sequence[Any],
    per: int,
    by: int = 1,
    keep: Callable[..., bool] | None = None,
    ids: Callable[[Any], str] | None = None,
    seed: int = 0,
) -> pytest.MarkDecorator:
    """pytest.mark.parametrize over the product of axes, as JAX's tests sample theirs:
    the product is declared whole, and by default a deterministic sample of it runs;
    `pytest --full-product` (or JCONV_FULL_PRODUCT=1) runs all of it.

    The sample has `per` cases for each combination of the first `by` axes (each method,
    usually), each combination taking a different stretch of one shuffled list of the
    other axes' combinations, so that together they cover as many of those as they can.
    keep(*case) leaves out cases that would not test what the test claims (a method that
    hands the shape to another): out of the declared product too. ids(value) names a value.
    """
    sizes = [range(len(a)) for a in axes]

    def accepted(index: tuple[int, ...]) -> bool:
        return keep is None or keep(*(axis[i] for axis, i in zip(axes, index)))

    chosen = [i for i in itertools.product(*sizes) if accepted(i)]
    if not full_product():
        rest = list(itertools.product(*sizes[by:]))
        random.Random(seed).shuffle(rest)
        sampled: set[tuple[int, ...]] = set()
        for g, group in enumerate(itertools.product(*sizes[:by])):
            valid = [(*group, *r) for r in rest if accepted((*group, *r))]
            sampled.update(valid[(g * per + j) % len(valid)] for j in range(min(per, len(valid))))
        chosen = [i for i in chosen if i in sampled]  # in the product's order
    cases = [tuple(axis[i] for axis, i in zip(axes, index)) for index in chosen]
    name = ids or str
    return pytest.mark.parametrize(
        argnames, cases, ids=["-".join(name(v) for v in case) for case in cases]
    )
