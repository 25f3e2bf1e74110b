"""WINOGRAD_1D (jconv/_method_winograd_1d.py): Winograd's F(4, kw) along the width, lax's
convolution down the columns. Forward and gradients against the NumPy loop and lax,
under every transformation, with Inf and NaN where the definition puts them, and the
rule that picks it."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jconv
from jconv._auto import WINOGRAD_1D, choose_method
from jconv._checks import check_conv_args
from jconv._conv_primitive import lowered_conv
from jconv._method_winograd_1d import WINOGRAD_1D as WINOGRAD_1D_LOWERING
from jconv._method_winograd_1d import conv_winograd_1d, winograd_1d_supported
from tests._cpu import (
    assert_shard_map_like_lax,
    assert_split_batch_like_lax,
    needs_8_cpu_devices,
)
from tests._helpers import assert_auto_runs, lowerings_run, transformation_results
from tests.reference import (
    assert_close,
    assert_same_non_finite,
    conv_lax,
    conv_numpy,
    conv_numpy_vjp,
    explicit_pads,
)

# (x NCHW, kernel OIHW, conv2d's arguments): every width the transform takes (2 to 5),
# heights 1 to 5, padding forms, padding beyond the kernel's reach (the input gradient's
# correlation crops), widths that leave a partial last tile, one row.
CASES = [
    ((2, 4, 9, 10), (6, 4, 5, 5), {"padding": "SAME"}),
    ((2, 3, 11, 12), (4, 3, 5, 5), {"padding": "VALID"}),
    ((1, 5, 7, 13), (3, 5, 3, 4), {"padding": ((2, 0), (1, 3))}),
    ((2, 4, 8, 9), (5, 4, 1, 3), {"padding": 1}),
    ((2, 2, 6, 7), (3, 2, 4, 2), {"padding": "SAME"}),
    ((2, 4, 9, 9), (5, 4, 3, 5), {"padding": ((4, 0), (1, 6))}),  # beyond the kernel's reach
    ((1, 3, 1, 17), (2, 3, 1, 5), {"padding": ((0, 0), (2, 2))}),  # one row
]


def _conv(kwargs, x_shape, k_shape, layout="NCHW", dtype="float32", **extra):
    """The lowering itself (not through 'auto'), on the spec conv2d would resolve."""
    spec = check_conv_args(
        x_shape, k_shape, x_dtype=dtype, kernel_dtype=dtype, layout="NCHW", **kwargs, **extra
    )
    spec = dataclasses.replace(spec, layout=layout)
    assert winograd_1d_supported(spec)
    return (lambda x, w_oihw: lowered_conv(x, w_oihw, spec, WINOGRAD_1D_LOWERING)), spec


@pytest.mark.parametrize("x_shape,k_shape,kwargs", CASES)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_against_the_numpy_loop(x_shape, k_shape, kwargs, layout):
    """y, dx and dw against the loop (float32 inputs, a float64 reference)."""
    rng = np.random.default_rng(41)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(k_shape).astype(np.float32)
    conv, spec = _conv(kwargs, x_shape, k_shape, layout)
    pads = explicit_pads(spec.pads)
    nhwc = layout == "NHWC"
    to = lambda a: a.transpose(0, 2, 3, 1) if nhwc else a
    back = lambda a: np.asarray(a).transpose(0, 3, 1, 2) if nhwc else np.asarray(a)
    y, vjp = jax.vjp(jax.jit(conv), to(x), w)
    want = conv_numpy(x, w, pads=pads)
    assert_close(back(y), want)
    dy = rng.standard_normal(want.shape).astype(np.float32)
    dx, dw = vjp(to(dy))
    dx_want, dw_want = conv_numpy_vjp(x, w, dy, pads=pads)
    assert_close(back(dx), dx_want)
    assert_close(dw, dw_want)


@pytest.mark.parametrize("case", [0, 2, 5])
def test_transformations_against_lax(case):
    """jvp, vmap of x and of the kernel, the transpose in x, a second derivative and remat,
    under jit, against lax at HIGHEST."""
    x_shape, k_shape, kwargs = CASES[case]
    rng = np.random.default_rng(42)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(k_shape).astype(np.float32)
    conv, _ = _conv(kwargs, x_shape, k_shape)
    ref = lambda x, w: conv_lax(x, w, **kwargs)
    ct = rng.standard_normal(jax.eval_shape(ref, x, w).shape).astype(np.float32)
    tx, tw = (rng.standard_normal(a.shape).astype(np.float32) for a in (x, w))

    got = transformation_results(conv, x, w, ct, tx, tw)
    want = transformation_results(ref, x, w, ct, tx, tw)
    for name in want:
        jax.tree.map(lambda g, e: assert_close(g, e, scale=float(np.max(np.abs(e))) + 1.0),
                     got[name], want[name])  # fmt: skip


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_narrow_dtypes(dtype):
    """Transforms and column convolutions in float32, the result and gradients in the
    inputs' dtype, within its tolerance of lax on the same values in float32."""
    x_shape, k_shape, kwargs = CASES[0]
    rng = np.random.default_rng(43)
    x = jnp.asarray(rng.standard_normal(x_shape), dtype)
    w = jnp.asarray(rng.standard_normal(k_shape), dtype)
    conv, _ = _conv(kwargs, x_shape, k_shape, dtype=dtype)
    f32 = lambda a: a.astype(jnp.float32)
    ref = lambda x, w: conv_lax(f32(x), f32(w), **kwargs)
    y, vjp = jax.vjp(jax.jit(conv), x, w)
    assert y.dtype == dtype
    assert_close(y, ref(x, w), dtype)
    ct = jnp.asarray(rng.standard_normal(y.shape), dtype)
    for got, want in zip(vjp(ct), jax.vjp(ref, x, w)[1](f32(ct))):
        assert got.dtype == dtype
        assert_close(got, want, dtype, scale=float(jnp.max(jnp.abs(want))) + 1.0)


def test_preferred_element_type():
    """bfloat16 inputs into a float32 result: y in float32, the gradients in bfloat16, within
    bfloat16's tolerance of lax on the same values in float32."""
    x_shape, k_shape, kwargs = CASES[0]
    rng = np.random.default_rng(49)
    x = jnp.asarray(rng.standard_normal(x_shape), jnp.bfloat16)
    w = jnp.asarray(rng.standard_normal(k_shape), jnp.bfloat16)
    conv, _ = _conv(kwargs, x_shape, k_shape, dtype="bfloat16", preferred_element_type=jnp.float32)
    y, vjp = jax.vjp(jax.jit(conv), x, w)
    assert y.dtype == jnp.float32
    f32 = lambda a: a.astype(jnp.float32)
    ref = lambda x, w: conv_lax(f32(x), f32(w), **kwargs)
    y_ref, vjp_ref = jax.vjp(ref, x, w)
    assert_close(y, y_ref, jnp.bfloat16)
    ct = rng.standard_normal(y.shape).astype(np.float32)
    for got, want in zip(vjp(ct), vjp_ref(ct)):
        assert got.dtype == jnp.bfloat16
        assert_close(got, want, jnp.bfloat16, scale=float(jnp.max(jnp.abs(want))) + 1.0)


@pytest.mark.parametrize(
    "where,value",
    [("x", np.inf), ("x", np.nan), ("w", -np.inf), ("ct", np.inf)],
)
def test_non_finite_values_land_where_the_definition_puts_them(where, value):
    """The transforms add and subtract values within a tile (an Inf would spread as NaN):
    each member's result is checked and recomputed exactly where it is not all finite."""
    x_shape, k_shape, kwargs = CASES[0]
    rng = np.random.default_rng(44)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(k_shape).astype(np.float32)
    conv, spec = _conv(kwargs, x_shape, k_shape)
    ct = rng.standard_normal(jax.eval_shape(conv, x, w).shape).astype(np.float32)
    target = {"x": x, "w": w, "ct": ct}[where]
    target[(0, 1, 2, 3)] = value
    y, vjp = jax.vjp(jax.jit(conv), x, w)
    dx, dw = vjp(ct)
    pads = explicit_pads(spec.pads)
    assert_same_non_finite(y, conv_numpy(x, w, pads=pads), "y")
    dx_want, dw_want = conv_numpy_vjp(x, w, ct, pads=pads)
    assert_same_non_finite(dx, dx_want, "dx")
    assert_same_non_finite(dw, dw_want, "dw")
    assert not np.isfinite(np.asarray(y if where != "ct" else dw)).all()


def test_unsupported_shapes_run_winograd():
    """Strided, dilated, grouped or too wide: 'winograd''s own code (and its fallbacks)."""
    rng = np.random.default_rng(45)
    x = rng.standard_normal((2, 4, 11, 11)).astype(np.float32)
    for k_shape, extra in [
        ((6, 4, 3, 3), {"stride": 2}),
        ((6, 4, 3, 3), {"dilation": 2}),
        ((6, 2, 3, 3), {"groups": 2}),
        ((6, 4, 3, 6), {}),
        ((6, 4, 3, 1), {}),
    ]:
        w = rng.standard_normal(k_shape).astype(np.float32)
        spec = check_conv_args(
            x.shape, w.shape, x_dtype="float32", kernel_dtype="float32", padding=1, **extra
        )
        assert not winograd_1d_supported(spec)
        conv = lambda x, w, spec=spec: conv_winograd_1d(x, w, spec)
        assert WINOGRAD_1D not in lowerings_run(conv, x, w)
        assert_close(jax.jit(conv)(x, w), conv_lax(x, w, padding=1, **extra))


# Shapes 'auto' runs by WINOGRAD_1D on a CPU (5x5 kernels in float32 and bfloat16, enough
# channels for 'winograd'), and neighbours it does not (jconv/_auto.py,
# `_width_transform_wins`).
RULE_CASES = [
    ((4, 100, 72, 72), (100, 100, 5, 5), {}, "float32", WINOGRAD_1D),  # the lesson's layer
    ((8, 256, 16, 16), (256, 256, 5, 5), {"padding": 2}, "float32", WINOGRAD_1D),
    ((4, 100, 72, 72), (100, 100, 5, 5), {}, "bfloat16", WINOGRAD_1D),
    ((4, 100, 72, 72), (100, 100, 5, 5), {}, "float16", "winograd"),  # not measured
    ((4, 64, 28, 28), (64, 64, 3, 3), {"padding": 1}, "float32", "winograd"),  # 3x3: lost
    ((8, 64, 28, 28), (64, 64, 4, 4), {"padding": "SAME"}, "float32", "winograd"),  # 4x4
    ((4, 64, 28, 28), (64, 64, 5, 3), {"padding": 1}, "float32", "winograd"),  # 5x3
]


@pytest.mark.parametrize("x_shape,k_shape,kwargs,dtype,expected", RULE_CASES)
def test_rule(x_shape, k_shape, kwargs, dtype, expected):
    spec = check_conv_args(x_shape, k_shape, x_dtype=dtype, kernel_dtype=dtype, **kwargs)
    assert choose_method(spec) == expected


@pytest.mark.usefixtures("on_cpu")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_auto_runs_it(dtype):
    """'auto' on a small 5x5 layer: WINOGRAD_1D forward and backward, against lax on the
    same values in float32."""
    x_shape, k_shape, kwargs = (2, 32, 12, 12), (40, 32, 5, 5), {"padding": "SAME"}
    rng = np.random.default_rng(46)
    x = jnp.asarray(rng.standard_normal(x_shape), dtype)
    w = jnp.asarray(rng.standard_normal(k_shape), dtype)
    assert_auto_runs(WINOGRAD_1D, x, w, **kwargs)


@needs_8_cpu_devices
@pytest.mark.usefixtures("on_cpu")
def test_on_a_split_batch():
    """x split along the batch over 8 devices in JAX's explicit sharding mode: the batch
    stays split, forward and input gradient, and both gradients agree with lax."""
    x_shape, k_shape, kwargs = (8, 32, 10, 10), (32, 32, 5, 5), {"padding": "SAME"}
    rng = np.random.default_rng(47)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(k_shape).astype(np.float32)
    conv = lambda x, w: jconv.conv2d(x, w, **kwargs)
    assert lowerings_run(conv, x, w) == {WINOGRAD_1D}
    assert_split_batch_like_lax(conv, x, w, **kwargs)


@needs_8_cpu_devices
@pytest.mark.usefixtures("on_cpu")
def test_inside_shard_map():
    """'auto' inside shard_map, the batch split over two devices: y, dx and the kernel's
    gradient (summed over the devices) against lax."""
    x_shape, k_shape, kwargs = (4, 32, 10, 10), (32, 32, 5, 5), {"padding": "SAME"}
    rng = np.random.default_rng(48)
    x, w = (rng.standard_normal(s).astype(np.float32) for s in (x_shape, k_shape))
    ct = rng.standard_normal((4, 32, 10, 10)).astype(np.float32)
    conv = lambda x, w: jconv.conv2d(x, w, **kwargs)
    assert lowerings_run(conv, x[:2], w) == {WINOGRAD_1D}
    assert_shard_map_like_lax(conv, x, w, ct, **kwargs)
