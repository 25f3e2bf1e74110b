"""Bad input to conv2d: a ValueError or TypeError naming the argument, before XLA sees it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jconv

X = np.random.default_rng(0).standard_normal((2, 4, 8, 8)).astype(np.float32)  # N, C, H, W
W = np.random.default_rng(1).standard_normal((6, 4, 3, 3)).astype(np.float32)  # O, C, kh, kw

BAD = [
    # (x, kernel, kwargs, exception, message pattern)
    (X[0, 0], W, {}, ValueError, r"x must have shape NCHW .*got shape \(8, 8\)"),
    (X[None], W, {}, ValueError, r"got shape \(1, 2, 4, 8, 8\)"),
    (X, W[0], {}, ValueError, r"kernel must have shape OIHW .*\(4, 3, 3\)"),
    (X, W[:, :3], {}, ValueError, r"channel mismatch: x has 4 channels .*expects 3"),
    (X, W, {"layout": "NHWC"}, ValueError, "channel mismatch"),
    (X, W[:, :2], {"groups": 3}, ValueError, r"groups=3 must divide .*\(4, .*\(6, "),
    (X, W[:5, :2], {"groups": 2}, ValueError, r"groups=2 must divide .* \(5, shape"),
    (X, W, {"groups": 0}, ValueError, "groups must be at least 1, got 0"),
    (X, W, {"groups": 1.5}, TypeError, "groups must be an int"),
    (X[:, :, :2], W, {}, ValueError, r"kernel window \(3, 3\).*padded input \(2, 8\)"),
    (X, W, {"dilation": 4}, ValueError, r"kernel window \(9, 9\).*dilation \(4, 4\)"),
    (X, W, {"stride": 0}, ValueError, "stride must be at least 1, got 0"),
    (X, W, {"stride": (1, -2)}, ValueError, r"stride must be at least 1, got \(1, -2\)"),
    (X, W, {"stride": (1, 2, 3)}, TypeError, "stride must be an int or a pair"),
    (X, W, {"stride": 1.0}, TypeError, "stride must be an int or a pair of ints, got 1.0"),
    (X, W, {"stride": True}, TypeError, "stride must be an int or a pair"),
    (X, W, {"dilation": 0}, ValueError, "dilation must be at least 1"),
    (X, W, {"padding": -1, "padding_mode": "reflect"}, ValueError, "negative padding .*'zeros'"),
    (X, W, {"padding": ((0, 1), (-4, -4))}, ValueError, r"\(-4, -4\) on the width .*crops all"),
    (X, W, {"input_dilation": 0}, ValueError, "input_dilation must be at least 1, got 0"),
    (X, W, {"input_dilation": 2, "padding": "SAME"}, ValueError, "give explicit amounts"),
    (X, W, {"padding": "FULL"}, ValueError, r"padding must be one of .*'FULL'"),
    (X, W, {"padding": (1, 2, 3)}, ValueError, r"padding must be .*\(1, 2, 3\)"),
    (X, W, {"padding": 1.5}, ValueError, "padding must be"),
    (X, W, {"padding_mode": "mirror"}, ValueError, "padding_mode must be one of .*'mirror'"),
    (
        X,
        W,
        {"padding": 8, "padding_mode": "reflect"},
        ValueError,
        r"reflect padding of \(8, 8\) on the height axis needs .* 9 .* it is 8",
    ),
    (X, W, {"padding": 9, "padding_mode": "circular"}, ValueError, "wrap around more than once"),
    (X, W, {"layout": "CHWN"}, ValueError, "layout must be one of .*'CHWN'"),
    (X, W, {"method": "fft"}, ValueError, "method must be one of .*'fft'"),
    (X, W, {"precision": "bogus"}, ValueError, "precision .bogus."),
    (X, W, {"precision": 3}, TypeError, "precision must be"),
    (X, W, {"preferred_element_type": jnp.int32}, TypeError, "preferred_element_type has dtype"),
    (
        X,
        W,
        {"preferred_element_type": jnp.bfloat16},
        TypeError,
        "preferred_element_type bfloat16 must not be narrower than the inputs' dtype float32",
    ),
    (X.astype(np.int32), W, {}, TypeError, "x has dtype int32; jconv supports float16"),
    (X, W.astype(bool), {}, TypeError, "kernel has dtype bool"),
    (X.astype(np.complex64), W, {}, TypeError, "x has dtype complex64"),
]


@pytest.mark.parametrize(
    "x,kernel,kwargs,exc,match", BAD, ids=[f"{i}-{b[4][:30]}" for i, b in enumerate(BAD)]
)
@pytest.mark.parametrize("method", ["auto", "xla"])
def test_bad_input_is_refused_clearly(x, kernel, kwargs, exc, match, method):
    kwargs = {"method": method, **kwargs}
    with pytest.raises(exc, match=match):
        jconv.conv2d(x, kernel, **kwargs)


def test_bad_bias():
    with pytest.raises(ValueError, match=r"bias must have shape \(O,\) = \(6,\).*\(4,\)"):
        jconv.conv2d(X, W, np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"got shape \(6, 1\)"):
        jconv.conv2d(X, W, np.ones((6, 1), np.float32))
    with pytest.raises(TypeError, match="bias has dtype int32"):
        jconv.conv2d(X, W, np.ones(6, np.int32))


def test_errors_are_raised_before_xla_under_jit():
    """Shapes are static, so a traced call fails at trace time with the same message."""
    f = jax.jit(lambda x, w: jconv.conv2d(x, w, groups=3))
    with pytest.raises(ValueError, match="groups=3 must divide"):
        f(X, W)


def test_strict_promotion_refuses_mixed_dtypes():
    """Mixed dtypes follow JAX's promotion, so strict promotion refuses them."""
    with jax.numpy_dtype_promotion("strict"), pytest.raises(Exception, match="promot"):
        jconv.conv2d(X.astype(jnp.bfloat16), W)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
@pytest.mark.parametrize("method", [m for m in jconv.METHODS if m != "pallas"])
def test_strict_promotion_accepts_one_half_precision_dtype(method, dtype):
    """Nothing is mixed when x and the kernel share a dtype, so strict promotion allows it."""
    with jax.numpy_dtype_promotion("strict"):
        y = jconv.conv2d(X.astype(dtype), W.astype(dtype), padding=1, method=method)
    assert y.dtype == dtype


def test_accepts_numpy_integers_and_lists():
    y = jconv.conv2d(X, W, stride=[np.int64(2), 1], padding=[[1, 0], [0, 1]], groups=np.int32(1))
    assert y.shape == (2, 6, 4, 7)
