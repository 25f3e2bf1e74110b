"""method='banded': both ways of cutting the block windows, against lax, forward and gradients.

Up to MAX_BLOCK_SLICES block windows they are sliced one by one; beyond, by shift
(jconv/_method_banded.py). tests/test_conv2d.py covers the first on its configurations;
here, problems wide enough for the second.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jconv
from jconv._auto import BANDED_GRADIENTS, TAPS_BANDED_GRADIENTS, choose_method, cpu_compute_dtype
from jconv._checks import check_conv_args
from jconv._method_banded import MAX_BLOCK_SLICES, banded_unrolled
from tests._cpu import (
    assert_split_batch_like_lax,
    needs_8_cpu_devices,
)
from tests._helpers import lowerings_run, transformation_results
from tests.reference import assert_close, assert_same_non_finite, conv_lax, conv_numpy_vjp


@pytest.mark.parametrize(
    "x_shape,k_shape,kwargs",
    [
        ((1, 2, 4, 124), (32, 2, 3, 3), {"padding": "SAME"}),  # MIN_BLOCK columns per block
        ((2, 3, 5, 1000), (8, 3, 2, 3), {"stride": (2, 3), "padding": 1}),  # 4 per block
        ((1, 4, 6, 300), (6, 2, 3, 2), {"dilation": (2, 3), "groups": 2}),
    ],
)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_windows_cut_by_shift(x_shape, k_shape, kwargs, layout):
    spec = check_conv_args(x_shape, k_shape, x_dtype="float32", kernel_dtype="float32", **kwargs)
    assert banded_unrolled(spec) > MAX_BLOCK_SLICES
    rng = np.random.default_rng(11)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(k_shape).astype(np.float32)
    if layout == "NHWC":
        x, w = x.transpose(0, 2, 3, 1), w.transpose(2, 3, 1, 0)
    conv = lambda x, w: jconv.conv2d(
        x, w, method="banded", layout=layout, precision="highest", **kwargs
    )
    ref = lambda x, w: conv_lax(x, w, layout=layout, **kwargs)
    y, vjp = jax.vjp(conv, x, w)
    y_ref, vjp_ref = jax.vjp(ref, x, w)
    assert_close(y, y_ref)
    ct = rng.standard_normal(y.shape).astype(np.float32)
    for got, want in zip(vjp(ct), vjp_ref(ct)):
        assert_close(got, want)


# Shapes 'auto' runs with the band's gradients and another forward pass (jconv/_auto.py):
# lax's (BANDED_GRADIENTS) for 3x3 kernels on 4 channels, and on 1 channel with more than
# SINGLE_CHANNEL_MAX_PRODUCTS outputs times taps; 'taps''s elementwise one
# (TAPS_BANDED_GRADIENTS) on 1 channel with fewer, where the band or lax ran the forward,
# and on 2 or 3 channels per group with 3x3 kernels, where the band did; strided, lax's
# forward with 5x5 kernels and up
GRADIENT_CASES = {
    "four channels": ((2, 4, 6, 40), (8, 4, 3, 3), {"padding": "SAME"}, BANDED_GRADIENTS),
    "one channel, many outputs": ((2, 1, 9, 12), (72, 1, 3, 3), {"padding": 1}, BANDED_GRADIENTS),
    "one channel": ((2, 1, 9, 12), (32, 1, 3, 3), {"padding": 1}, TAPS_BANDED_GRADIENTS),
    "one channel, 5x5": ((3, 1, 10, 9), (6, 1, 5, 5), {"padding": 2}, TAPS_BANDED_GRADIENTS),
    "three channels": ((2, 3, 9, 11), (8, 3, 3, 3), {"padding": "SAME"}, TAPS_BANDED_GRADIENTS),
    "two channels": ((2, 2, 12, 16), (32, 2, 3, 3), {"padding": 1}, TAPS_BANDED_GRADIENTS),
    "strided": (
        (2, 3, 9, 32), (8, 3, 3, 3), {"stride": 2, "padding": "SAME"}, TAPS_BANDED_GRADIENTS
    ),
    "stem": ((2, 3, 11, 40), (8, 3, 7, 7), {"stride": 2, "padding": 3}, BANDED_GRADIENTS),
    "one channel strided": (
        (2, 1, 12, 40), (8, 1, 5, 5), {"stride": 2, "padding": 2}, TAPS_BANDED_GRADIENTS
    ),
}  # fmt: skip


def auto_conv(kwargs, layout="NCHW", dtype="float32"):
    """conv2d by 'auto', at HIGHEST in float32.

    The tests that use it ask for the `on_cpu` fixture: the band's gradients are the
    CPU rule's choice, and on a GPU 'auto' runs lax (there, cuDNN's input gradient put
    NaN at 570 entries where the NumPy loop has 468, seen on an H200).
    """
    precision = "highest" if dtype == "float32" else None
    return lambda x, w: jconv.conv2d(x, w, layout=layout, precision=precision, **kwargs)


@pytest.mark.parametrize(
    "x_shape,k_shape,kwargs,lowering", GRADIENT_CASES.values(), ids=GRADIENT_CASES.keys()
)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.usefixtures("on_cpu")
def test_band_gradients_of_another_forward(x_shape, k_shape, kwargs, lowering, layout):
    """y is lax's own convolution or 'taps''s elementwise one; dx, dw (and everything
    built on them) are the band's, each against lax at HIGHEST: grad, jvp, vmap of x and
    of the kernel, the transpose in x and a second derivative, all under jit."""
    spec = check_conv_args(x_shape, k_shape, x_dtype="float32", kernel_dtype="float32", **kwargs)
    assert choose_method(spec) == lowering
    rng = np.random.default_rng(5)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(k_shape).astype(np.float32)
    if layout == "NHWC":
        x, w = x.transpose(0, 2, 3, 1), w.transpose(2, 3, 1, 0)
    conv = auto_conv(kwargs, layout)
    ref = lambda x, w: conv_lax(x, w, layout=layout, **kwargs)
    assert lowerings_run(conv, x, w) == {lowering}
    y_shape = jax.eval_shape(ref, x, w).shape
    ct = rng.standard_normal(y_shape).astype(np.float32)
    tx, tw = rng.standard_normal(x.shape), rng.standard_normal(w.shape)
    tx, tw = tx.astype(np.float32), tw.astype(np.float32)

    got = transformation_results(conv, x, w, ct, tx, tw)
    want = transformation_results(ref, x, w, ct, tx, tw)
    for name in want:
        jax.tree.map(assert_close, got[name], want[name])


@pytest.mark.parametrize("case", ["three channels", "strided", "stem", "one channel strided"])
@needs_8_cpu_devices
@pytest.mark.usefixtures("on_cpu")
def test_band_gradients_of_another_forward_on_a_split_batch(case):
    """x split along the batch over 8 devices in JAX's explicit sharding mode: 'taps''s
    forward (or lax's) and the band's gradients keep the batch split and agree with lax."""
    x_shape, k_shape, kwargs, lowering = GRADIENT_CASES[case]
    x_shape = (8, *x_shape[1:])
    spec = check_conv_args(x_shape, k_shape, x_dtype="float32", kernel_dtype="float32", **kwargs)
    assert choose_method(spec) == lowering
    rng = np.random.default_rng(12)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(k_shape).astype(np.float32)
    assert_split_batch_like_lax(auto_conv(kwargs), x, w, **kwargs)


@pytest.mark.usefixtures("on_cpu")
def test_band_gradients_of_lax_bfloat16_forward():
    """bfloat16 inputs: y is lax's own bfloat16 convolution, the same bits as method='xla'
    (widened to float32 first it ran 0.82x to 0.94x lax's forward); dx and dw are the
    band's, accumulating in float32 (dx's GEMM takes dy and the band in bfloat16, not
    widened first): within bfloat16's tolerance of lax in float32."""
    x_shape, k_shape, kwargs, _ = GRADIENT_CASES["four channels"]
    spec = check_conv_args(x_shape, k_shape, x_dtype="bfloat16", kernel_dtype="bfloat16", **kwargs)
    assert choose_method(spec) == BANDED_GRADIENTS
    assert cpu_compute_dtype(spec, BANDED_GRADIENTS) is None
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.standard_normal(x_shape), jnp.bfloat16)
    w = jnp.asarray(rng.standard_normal(k_shape), jnp.bfloat16)
    conv = auto_conv(kwargs, dtype="bfloat16")
    y, vjp = jax.vjp(conv, x, w)
    assert y.dtype == jnp.bfloat16
    lax_y = jax.jit(lambda x, w: jconv.conv2d(x, w, method="xla", **kwargs))(x, w)
    np.testing.assert_array_equal(np.asarray(jax.jit(conv)(x, w)), np.asarray(lax_y))
    ref = lambda x, w: conv_lax(x.astype(jnp.float32), w.astype(jnp.float32), **kwargs)
    y_ref, vjp_ref = jax.vjp(ref, x, w)
    assert_close(y, y_ref, jnp.bfloat16)
    ct = jnp.asarray(rng.standard_normal(y.shape), jnp.bfloat16)
    for got, want in zip(vjp(ct), vjp_ref(ct.astype(jnp.float32))):
        assert got.dtype == jnp.bfloat16
        assert_close(got, want, jnp.bfloat16)
    # dx's GEMM takes bfloat16 operands into a float32 result (the others place weights)
    dx_program = jax.jit(lambda ct: vjp(ct)[0]).lower(ct).as_text()
    signature = r"dot_general.*: \((tensor<\S*>), (tensor<\S*>)\) -> (tensor<\S*>)"
    dots = re.findall(signature, dx_program)
    wanted = ("xbf16>", "xbf16>", "xf32>")
    assert any(all(t.endswith(e) for t, e in zip(dot, wanted)) for dot in dots), dots


@pytest.mark.usefixtures("on_cpu")
@pytest.mark.parametrize("case", ["one channel, 5x5", "three channels"])
def test_elementwise_forward_in_bfloat16(case):
    """One or three input channels in bfloat16: 'taps''s forward pass (rounded by
    jconv/_rounding.py) and the band's gradients, all three in bfloat16, within
    bfloat16's tolerance of lax in float32."""
    x_shape, k_shape, kwargs, lowering = GRADIENT_CASES[case]
    spec = check_conv_args(x_shape, k_shape, x_dtype="bfloat16", kernel_dtype="bfloat16", **kwargs)
    assert lowering == TAPS_BANDED_GRADIENTS and choose_method(spec) == lowering
    rng = np.random.default_rng(8)
    x = jnp.asarray(rng.standard_normal(x_shape), jnp.bfloat16)
    w = jnp.asarray(rng.standard_normal(k_shape), jnp.bfloat16)
    conv = auto_conv(kwargs, dtype="bfloat16")
    assert lowerings_run(conv, x, w) == {lowering}
    y, vjp = jax.vjp(jax.jit(conv), x, w)
    ref = lambda x, w: conv_lax(x.astype(jnp.float32), w.astype(jnp.float32), **kwargs)
    y_ref, vjp_ref = jax.vjp(ref, x, w)
    assert y.dtype == jnp.bfloat16
    assert_close(y, y_ref, jnp.bfloat16)
    ct = jnp.asarray(rng.standard_normal(y.shape), jnp.bfloat16)
    for got, want in zip(jax.jit(vjp)(ct), vjp_ref(ct.astype(jnp.float32))):
        assert got.dtype == jnp.bfloat16
        assert_close(got, want, jnp.bfloat16)


@pytest.mark.parametrize("where", ["x", "w"])
@pytest.mark.usefixtures("on_cpu")
def test_band_gradients_place_non_finite_values(where):
    """An Inf and a NaN in x or in the kernel: y where lax has them (it is lax's), dx and
    dw where the NumPy loop's gradients have them (the band's results are checked and
    recomputed exactly; jconv/_conv_primitive.py)."""
    x_shape, k_shape, kwargs, _ = GRADIENT_CASES["four channels"]
    rng = np.random.default_rng(7)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(k_shape).astype(np.float32)
    poisoned = x if where == "x" else w
    poisoned[0, 1, 2, 2] = np.inf
    poisoned[-1, 2, 1, 0] = np.nan
    conv = auto_conv(kwargs)
    y, vjp = jax.vjp(conv, x, w)
    ct = rng.standard_normal(y.shape).astype(np.float32)
    dx, dw = jax.jit(vjp)(ct)
    spec = check_conv_args(x_shape, k_shape, x_dtype="float32", kernel_dtype="float32", **kwargs)
    dx_want, dw_want = conv_numpy_vjp(x, w, ct, pads=spec.pads)
    assert_same_non_finite(y, conv_lax(x, w, **kwargs), "y")
    assert_same_non_finite(dx, dx_want, "dx")
    assert_same_non_finite(dw, dw_want, "dw")
    # the gradient the poison reaches (dw = x * dy, dx = dy * w) was the band's to check
    assert not np.isfinite(dw if where == "x" else dx).all()
