"""Non-finite values and overflow: every method puts NaN and Inf where lax does, forward and back.

'banded' and 'winograd' mix values before multiplying; their results are checked
and recomputed exactly where they are not all finite (jconv/_finite_guard.py).
Every lowering's intermediate values must also be as safe from overflow as
lax's, float16 included. Inputs come from NumPy; lax runs at Precision.HIGHEST.

The forward pass is compared with lax and the NumPy loop; the gradients with the
NumPy loop's (tests/reference.py), which hold exactly the products the
definition forms. lax's own input gradient can also multiply the zeros it pads
the cotangent with, so that a non-finite kernel value gives NaN where no
product reaches, depending on how XLA compiled it (seen on a CPU at stride 1,
not inside every program): that is no placement to match, and 'xla' is left out
of the gradient comparison. ('auto' runs one of the others: tests/test_auto.py.)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jconv
from jconv._checks import check_conv_args
from jconv._finite_guard import finite_or_exact, is_all_finite
from tests.reference import (
    assert_close,
    assert_same_non_finite,
    conv_lax,
    conv_numpy,
    conv_numpy_vjp,
    same_non_finite,
)

# 'pallas' runs its GPU kernels in Pallas's interpret mode here, seconds per compile;
# 'auto' runs one of the others (tests/test_auto.py)
METHODS = [m for m in jconv.METHODS if m not in ("pallas", "auto")]


@functools.partial(jax.jit, static_argnums=0)
def value_and_grads(conv, x, w, ct):
    """y and (dx, dw) for the loss <y, ct>: one program per conv function and shapes."""
    y, vjp = jax.vjp(conv, x, w)
    return (y, *vjp(ct))


def compare(method, x, w, ct, *, stride=1, padding="VALID", groups=1):
    """y against lax and the NumPy loop, dx and dw against the NumPy loop's gradients."""
    kwargs = {"stride": stride, "padding": padding, "groups": groups}
    y, dx, dw = value_and_grads(lambda x, w: jconv.conv2d(x, w, method=method, **kwargs), x, w, ct)
    spec = check_conv_args(x.shape, w.shape, x_dtype=x.dtype, kernel_dtype=w.dtype, **kwargs)
    loops = dict(stride=spec.stride, pads=spec.pads, groups=groups)
    y_lax, y_loop = conv_lax(x, w, **kwargs), conv_numpy(x, w, **loops)
    if method == "xla":
        # lax's own convolution may skip the products with the zeros it pads x with (0
        # where the definition's 0 * Inf is NaN: on an H200, and on a CPU for some
        # shapes, a 1x2 kernel with 'SAME' padding among them): lax itself is then the
        # only reference
        assert_same_non_finite(y, y_lax, f"{method} y (lax)")
        return y, dx, dw
    if same_non_finite(y_lax, y_loop):  # lax forms the definition's products here
        assert_same_non_finite(y, y_lax, f"{method} y (lax)")
    assert_same_non_finite(y, y_loop, f"{method} y")
    dx_want, dw_want = conv_numpy_vjp(x, w, ct, **loops)
    assert_same_non_finite(dx, dx_want, f"{method} dx")
    assert_same_non_finite(dw, dw_want, f"{method} dw")
    return y, dx, dw


@st.composite
def poisoned_problems(draw):
    """A small convolution with a few Inf, -Inf or NaN in x, the kernel or the cotangent."""
    groups = draw(st.sampled_from([1, 1, 2]))
    cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(2, 5))
    stride = draw(st.sampled_from([1, 1, 2]))
    h, w = draw(st.integers(kh + 1, 9)), draw(st.integers(kw + 1, 11))
    padding = draw(st.sampled_from(["VALID", "SAME", 1]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((draw(st.integers(1, 2)), groups * cg, h, w)).astype(np.float32)
    k = rng.standard_normal((groups * og, cg, kh, kw)).astype(np.float32)
    kwargs = {"stride": stride, "padding": padding, "groups": groups}
    y_shape = jax.eval_shape(lambda: conv_lax(x, k, **kwargs)).shape
    ct = rng.standard_normal(y_shape).astype(np.float32)
    for _ in range(draw(st.integers(1, 3))):
        target = draw(st.sampled_from([x, x, k, ct]))
        index = tuple(rng.integers(0, n) for n in target.shape)
        target[index] = draw(st.sampled_from([np.inf, -np.inf, np.nan]))
    return draw(st.sampled_from(METHODS)), x, k, ct, kwargs


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(poisoned_problems())
def test_non_finite_values_land_where_lax_puts_them(problem):
    method, x, w, ct, kwargs = problem
    compare(method, x, w, ct, **kwargs)


@pytest.mark.parametrize("method", METHODS)
def test_where_lax_skips_the_borders_products(method):
    """A 1x2 kernel with an Inf, 'SAME' padding: the definition's last column is 0 * Inf,
    NaN, which the NumPy loop and jconv form and lax on a CPU skips (a finite value), as
    found by the test above in CI. Each method is held to the definition there, 'xla' to
    lax."""
    x = np.random.default_rng(5).standard_normal((1, 1, 2, 3)).astype(np.float32)
    w = np.array([[[[1.304, np.inf]]]], np.float32)
    ct = np.random.default_rng(6).standard_normal((1, 1, 2, 3)).astype(np.float32)
    y, _, _ = compare(method, x, w, ct, padding="SAME")
    assert np.isnan(np.asarray(y)[..., -1]).all() or method == "xla"


def _xwc(key, x_shape, w_shape, **kwargs):
    rng = np.random.default_rng(key)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    ct = rng.standard_normal(jax.eval_shape(lambda: conv_lax(x, w, **kwargs)).shape)
    return x, w, ct.astype(np.float32)


@pytest.mark.parametrize("method", ["banded", "winograd"])
def test_one_inf_in_a_corner(method):
    """The issue's case: lax has 4 non-finite kernel-gradient entries (one per output channel)."""
    x, w, ct = _xwc(1, (2, 3, 8, 8), (4, 3, 3, 3))
    x[0, 0, 0, 0] = np.inf
    _, _, dw = compare(method, x, w, ct)
    assert (~np.isfinite(dw)).sum() == 4


@pytest.mark.parametrize("method", ["banded", "vmap"])
def test_depthwise_inf_weight_stays_in_its_group(method):
    x, w, ct = _xwc(2, (2, 4, 8, 8), (4, 1, 3, 3), groups=4, padding=1)
    w[1, 0, 1, 2] = np.inf
    _, dx, _ = compare(method, x, w, ct, groups=4, padding=1)
    assert not np.isfinite(dx[:, 1]).all() and np.isfinite(dx[:, [0, 2, 3]]).all()


@pytest.mark.parametrize("method", ["banded", "winograd"])
def test_inf_in_the_cotangent_only(method):
    """Finite x and kernel, an Inf arriving from a later layer: the backward pass is checked."""
    x, w, ct = _xwc(3, (2, 3, 8, 9), (4, 3, 3, 3), padding=1)
    ct[1, 2, 4, 4] = -np.inf
    compare(method, x, w, ct, padding=1)


# -- overflow ------------------------------------------------------------------------------


def _checkerboard(shape, value):
    i, j = np.indices(shape[-2:])
    return np.broadcast_to(np.where((i + j) % 2 == 0, value, -value), shape)


@pytest.mark.parametrize("method", METHODS)
def test_float16_tile_sums_do_not_overflow(method):
    """The issue's case: +-2e4 in a checkerboard; a tile transform's sums reach 8e4 (float16's
    largest is 65504), the convolution's do not. Forward, and the input gradient of a
    loss-scaled cotangent."""
    x = _checkerboard((1, 32, 8, 8), 2e4).astype(np.float16)
    w = np.full((4, 32, 3, 3), 1e-3, np.float16)
    ct = _checkerboard((1, 4, 8, 8), 2e4).astype(np.float16)
    conv = lambda x, w: jconv.conv2d(x, w, padding="SAME", method=method)
    ref = lambda x, w: conv_lax(x, w, padding="SAME")
    (y, dx, _), (y_lax, dx_lax, _) = (value_and_grads(f, x, w, ct) for f in (conv, ref))
    assert np.isfinite(y_lax).all() and np.isfinite(dx_lax).all()
    assert_close(y, y_lax, jnp.float16)
    assert_close(dx, dx_lax, jnp.float16)


@pytest.mark.parametrize("method", METHODS)
def test_float16_tap_shares_do_not_overflow(method):
    """Each tap's share of the input gradient reaches 8e4, their sum only 1.6e4.

    The cotangent rises to a plateau of 2e4 in four output channels; the kernel's
    two taps, +1 and -1, cancel everywhere but on the slopes.
    """
    ramp = np.minimum(np.arange(16) * 4e3, 2e4)
    ramp = np.minimum(ramp, ramp[::-1])
    ct = np.broadcast_to(ramp, (1, 4, 3, 16)).astype(np.float16)
    x = np.broadcast_to(np.append(ramp, 0.0), (1, 4, 3, 17)).astype(np.float16)
    w = np.zeros((4, 4, 1, 2), np.float16)
    w[:, :, 0, 0], w[:, :, 0, 1] = 1, -1
    conv = lambda x, w: jconv.conv2d(x, w, method=method)
    (y, dx, _), (y_lax, dx_lax, _) = (value_and_grads(f, x, w, ct) for f in (conv, conv_lax))
    assert np.isfinite(dx_lax).all()
    assert_close(y, y_lax, jnp.float16)
    assert_close(dx, dx_lax, jnp.float16)


@pytest.mark.parametrize("method", METHODS)
def test_float32_near_its_largest(method):
    """The issue's cases. +-3e38 in x: a transform's difference of two is 6e38, the
    convolution's sums stay near 3e35. All-1e37 x: the kernel gradient sums 9 of them,
    a transform's sums reach further. lax stays finite, so must jconv."""
    x, w, _ = _xwc(4, (1, 3, 5, 5), (3, 3, 3, 3))
    w = (w * 1e-3).astype(np.float32)
    ct = np.ones((1, 3, 3, 3), np.float32)
    cases = [
        (_checkerboard(x.shape, 3e38).astype(np.float32), 2),  # y, dx (dw's sum: any order)
        (np.full(x.shape, 1e37, np.float32), 3),  # y, dx, dw
    ]
    # 'highest': a GPU's default precision rounds float32 operands to TF32
    conv = lambda x, w: jconv.conv2d(x, w, method=method, precision="highest")
    for x_, checked in cases:
        got = value_and_grads(conv, x_, w, ct)
        want = value_and_grads(conv_lax, x_, w, ct)
        for g, e in list(zip(got, want))[:checked]:
            assert np.isfinite(e).all()
            assert_close(g / 1e36, e / 1e36)


# -- the guard itself ----------------------------------------------------------------------


def test_is_all_finite():
    a = np.random.default_rng(5).standard_normal((3, 4)).astype(np.float16)
    assert bool(is_all_finite(a))
    for bad in (np.inf, -np.inf, np.nan):
        b = a.copy()
        b[1, 2] = bad
        assert not bool(is_all_finite(b))
    # float16 values whose sum overflows float16 but not the float32 it is taken in
    assert bool(is_all_finite(np.full((4,), 6e4, np.float16)))


def test_finite_or_exact_runs_exact_only_when_needed():
    exact = lambda a: a * 0 + 7.0
    ok = np.ones(3, np.float32)
    np.testing.assert_array_equal(finite_or_exact(ok * 2, exact, ok), ok * 2)
    np.testing.assert_array_equal(finite_or_exact(ok * np.inf, exact, ok), ok * 0 + 7)
