"""XLA_EIGEN (jconv/_method_xla_eigen.py): lax's convolution steered onto XLA:CPU's own
kernel, and TAPS_EIGEN_GRADIENTS and WINOGRAD_EIGEN_GRADIENTS, 'taps''s and 'winograd''s
forward passes with its gradients, and GROUPED_ELEMENTWISE (elementwise forward pass and
input gradient, its kernel gradient): forward and gradients against the NumPy loop and
lax, and the rule that picks them."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jconv
from jconv._auto import (
    GROUPED_ELEMENTWISE,
    TAPS_EIGEN_GRADIENTS,
    XLA_EIGEN,
    choose_method,
    cpu_compute_dtype,
)
from jconv._checks import check_conv_args
from jconv._conv_primitive import lowered_conv
from jconv._method_xla_eigen import GROUPED_ELEMENTWISE as GROUPED_ELEMENTWISE_LOWERING
from jconv._method_xla_eigen import TAPS_EIGEN_GRADIENTS as TAPS_EIGEN_GRADIENTS_LOWERING
from jconv._method_xla_eigen import WINOGRAD_EIGEN_GRADIENTS as WINOGRAD_EIGEN_GRADIENTS_LOWERING
from jconv._method_xla_eigen import XLA_EIGEN as XLA_EIGEN_LOWERING
from jconv._method_xla_eigen import conv_winograd_eigen_gradients, extension
from tests._cpu import (
    assert_shard_map_like_lax,
    assert_split_batch_like_lax,
    needs_8_cpu_devices,
)
from tests._helpers import assert_auto_runs, lowerings_run, transformation_results
from tests.reference import assert_close, conv_lax, conv_numpy, conv_numpy_vjp, explicit_pads


def _spec(x_shape, k_shape, dtype="float32", layout="NHWC", **kwargs):
    return check_conv_args(
        x_shape,
        k_shape,
        x_dtype=dtype,
        kernel_dtype=dtype,
        layout=layout,
        transposed_ok=True,
        **kwargs,
    )


@pytest.mark.parametrize(
    "x_shape,k_shape,kwargs,expected",
    [
        ((2, 8, 8, 32), (3, 3, 32, 32), {"padding": "SAME"}, (0, 1)),
        ((2, 64, 256, 16), (3, 3, 16, 64), {"padding": "SAME"}, (1, 1)),  # the cheaper axis
        ((4, 68, 68, 8), (5, 5, 8, 8), {"padding": "VALID"}, (0, 5)),  # 5 of 64 rows
        ((2, 16, 16, 8), (5, 5, 8, 8), {"padding": "VALID"}, None),  # 5 of 12: too many
        ((2, 56, 56, 8), (3, 3, 8, 8), {"padding": "SAME", "stride": 2}, None),
        ((2, 9, 9, 8), (3, 3, 8, 8), {"padding": 3}, (0, 0)),  # already longer than x
        ((2, 9, 9, 8), (3, 3, 8, 8), {"padding": 1, "input_dilation": 2}, None),
    ],
)
def test_extension(x_shape, k_shape, kwargs, expected):
    assert extension(_spec(x_shape, k_shape, **kwargs)) == expected


# (x NCHW, kernel OIHW, conv2d's arguments): padding forms, groups, dilation, strides (lax's
# input gradient there), padding beyond the kernel's reach (the input gradient's
# correlation crops), a kernel taller than the extension's axis is long.
CASES = [
    ((2, 4, 9, 10), (6, 4, 3, 3), {"padding": "SAME"}),
    ((2, 4, 9, 10), (6, 2, 3, 3), {"padding": ((2, 0), (1, 3)), "groups": 2}),
    ((1, 6, 12, 9), (6, 3, 3, 2), {"padding": 2, "dilation": (2, 3), "groups": 2}),
    ((2, 3, 11, 12), (4, 3, 5, 3), {"padding": "VALID"}),
    ((2, 4, 10, 11), (6, 4, 3, 3), {"padding": 1, "stride": (2, 1)}),
    ((2, 4, 10, 11), (4, 2, 3, 3), {"padding": 1, "stride": 2, "groups": 2}),
    ((2, 4, 9, 9), (5, 4, 3, 3), {"padding": ((3, 0), (1, 4))}),  # beyond the kernel's reach
    ((2, 4, 11, 3), (5, 4, 3, 1), {"padding": ((4, 0), (0, 0))}),  # a crop lax got wrong
    ((2, 4, 8, 9), (24, 2, 3, 3), {"padding": "SAME", "groups": 2}),  # 12 outputs a group
]


# The lowerings of the module: XLA_EIGEN, and 'taps''s and 'winograd''s forward passes with
# its gradients (the last through conv_winograd_eigen_gradients, which hands the shapes
# 'winograd' does not take to TAPS_EIGEN_GRADIENTS), and the elementwise one (which takes
# every case: its sums run with or without groups, its input gradient is lax's at strides).
LOWERINGS = {
    "xla_eigen": XLA_EIGEN_LOWERING,
    "taps_eigen_gradients": TAPS_EIGEN_GRADIENTS_LOWERING,
    "winograd_eigen_gradients": WINOGRAD_EIGEN_GRADIENTS_LOWERING,
    "grouped_elementwise": GROUPED_ELEMENTWISE_LOWERING,
}


def _eigen_conv(
    layout: str,
    kwargs: dict,
    x_shape,
    k_shape,
    dtype="float32",
    lowering=XLA_EIGEN_LOWERING,
    **extra,
):
    """The lowering itself (not through 'auto'), on the spec conv2d would resolve."""
    spec = check_conv_args(
        x_shape, k_shape, x_dtype=dtype, kernel_dtype=dtype, layout="NCHW", **kwargs, **extra
    )
    spec = dataclasses.replace(spec, layout=layout)

    def conv(x, w_oihw):
        if lowering is WINOGRAD_EIGEN_GRADIENTS_LOWERING:
            return conv_winograd_eigen_gradients(x, w_oihw, spec)
        return lowered_conv(x, w_oihw, spec, lowering)

    return conv, spec


@pytest.mark.parametrize("x_shape,k_shape,kwargs", CASES)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("lowering", LOWERINGS)
def test_against_the_numpy_loop(x_shape, k_shape, kwargs, layout, lowering):
    """y, dx and dw against the loop (float64 inputs, jax_enable_x64 off: float32)."""
    rng = np.random.default_rng(21)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(k_shape).astype(np.float32)
    conv, spec = _eigen_conv(layout, kwargs, x_shape, k_shape, lowering=LOWERINGS[lowering])
    pads = explicit_pads(spec.pads)
    ref_kwargs = {"stride": spec.stride, "dilation": spec.dilation, "groups": spec.groups}
    nhwc = layout == "NHWC"
    to = lambda a: a.transpose(0, 2, 3, 1) if nhwc else a
    back = lambda a: np.asarray(a).transpose(0, 3, 1, 2) if nhwc else np.asarray(a)
    y, vjp = jax.vjp(jax.jit(conv), to(x), w)
    want = conv_numpy(x, w, pads=pads, **ref_kwargs)
    assert_close(back(y), want)
    dy = rng.standard_normal(want.shape).astype(np.float32)
    dx, dw = vjp(to(dy))
    dx_want, dw_want = conv_numpy_vjp(x, w, dy, pads=pads, **ref_kwargs)
    assert_close(back(dx), dx_want)
    assert_close(dw, dw_want)


@pytest.mark.parametrize("x_shape,k_shape,kwargs", [c for c in CASES if "groups" in c[2]])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_grouped_elementwise_with_the_scan(x_shape, k_shape, kwargs, layout, monkeypatch):
    """GROUPED_ELEMENTWISE with its kernel gradient by the depthwise scans (`grouped_dw`,
    which large images get): y, dx and dw against the loop, jitted."""
    from jconv import _method_xla_eigen

    monkeypatch.setattr(_method_xla_eigen, "SCAN_MIN_WINDOW_BYTES", 0)
    monkeypatch.setattr(_method_xla_eigen, "SCAN_MAX_OUTPUTS", 64)  # 12 a group in one case
    jax.clear_caches()
    test_against_the_numpy_loop(x_shape, k_shape, kwargs, layout, "grouped_elementwise")
    conv, _ = _eigen_conv(layout, kwargs, x_shape, k_shape, lowering=GROUPED_ELEMENTWISE_LOWERING)
    x = np.zeros(x_shape if layout == "NCHW" else np.take(x_shape, (0, 2, 3, 1)), np.float32)
    dw = jax.jit(jax.grad(lambda w: jnp.sum(conv(x, w)))).lower(np.ones(k_shape, np.float32))
    assert "stablehlo.while" in dw.as_text()  # the scan's


@pytest.mark.parametrize("case", [0, 1, 4])
@pytest.mark.parametrize("lowering", LOWERINGS)
def test_transformations_against_lax(case, lowering):
    """jvp, vmap of x and of the kernel, the transpose in x and a second derivative,
    under jit, against lax at HIGHEST."""
    x_shape, k_shape, kwargs = CASES[case]
    rng = np.random.default_rng(22)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(k_shape).astype(np.float32)
    conv, _ = _eigen_conv("NCHW", kwargs, x_shape, k_shape, lowering=LOWERINGS[lowering])
    ref = lambda x, w: conv_lax(x, w, **kwargs)
    ct = rng.standard_normal(jax.eval_shape(ref, x, w).shape).astype(np.float32)
    tx, tw = (rng.standard_normal(a.shape).astype(np.float32) for a in (x, w))

    got = transformation_results(conv, x, w, ct, tx, tw)
    want = transformation_results(ref, x, w, ct, tx, tw)
    for name in want:
        jax.tree.map(assert_close, got[name], want[name])


@pytest.mark.parametrize("outputs,elementwise", [(8, True), (10, False), (24, False)])
def test_grouped_elementwise_input_gradient(outputs, elementwise):
    """GROUPED_ELEMENTWISE's input gradient is an elementwise sum (no convolution in its
    program) up to ELEMENTWISE_MAX_CHANNELS outputs a group and ELEMENTWISE_MAX_TERMS
    products an output (O/groups * kh * kw), lax's beyond (10 outputs a group; 24: 108
    products); against lax either way."""
    x_shape, k_shape = (2, 8, 7, 6), (outputs * 2, 4, 3, 3)
    kwargs = {"padding": ((2, 0), (1, 1)), "groups": 2}
    rng = np.random.default_rng(29)
    x, w = (rng.standard_normal(s).astype(np.float32) for s in (x_shape, k_shape))
    conv, _ = _eigen_conv("NCHW", kwargs, x_shape, k_shape, lowering=GROUPED_ELEMENTWISE_LOWERING)
    ct = rng.standard_normal(jax.eval_shape(conv, x, w).shape).astype(np.float32)
    dx = jax.jit(lambda x, w, ct: jax.vjp(lambda x: conv(x, w), x)[1](ct)[0])
    assert ("convolution" in dx.lower(x, w, ct).as_text()) != elementwise
    _, vjp_ref = jax.vjp(lambda x: conv_lax(x, w, **kwargs), x)
    assert_close(dx(x, w, ct), vjp_ref(ct)[0])


def test_preferred_element_type():
    """bfloat16 inputs into a float32 result: lax's input gradient (not the flipped
    correlation, whose operands would not share a dtype), within bfloat16's tolerance."""
    x_shape, k_shape, kwargs = CASES[0]
    rng = np.random.default_rng(23)
    x = jnp.asarray(rng.standard_normal(x_shape), jnp.bfloat16)
    w = jnp.asarray(rng.standard_normal(k_shape), jnp.bfloat16)
    conv, _ = _eigen_conv(
        "NCHW", kwargs, x_shape, k_shape, "bfloat16", preferred_element_type=jnp.float32
    )
    y, vjp = jax.vjp(jax.jit(conv), x, w)
    assert y.dtype == jnp.float32
    ref = lambda x, w: conv_lax(x.astype(jnp.float32), w.astype(jnp.float32), **kwargs)
    y_ref, vjp_ref = jax.vjp(ref, x, w)
    assert_close(y, y_ref, jnp.bfloat16)
    ct = rng.standard_normal(y.shape).astype(np.float32)
    for got, want in zip(vjp(ct), vjp_ref(ct)):
        assert got.dtype == jnp.bfloat16
        assert_close(got, want, jnp.bfloat16)


def _ynnpack_fusions(fn, *args) -> int:
    return jax.jit(fn).lower(*args).compile().as_text().count('"__ynn_fusion"')


@pytest.mark.usefixtures("on_cpu")
def test_keeps_xla_cpu_off_ynnpack():
    """What the lowering is for: lax's forward convolution and its stride-1 input gradient
    compile to no YNNPACK fusion (lax's own do). Skipped where XLA gives lax's to YNNPACK
    no longer (another jax): then the extra row buys nothing, and the rule should go."""
    x = np.random.default_rng(24).standard_normal((2, 16, 16, 32)).astype(np.float32)
    w = np.random.default_rng(25).standard_normal((3, 3, 32, 32)).astype(np.float32)
    lax_conv = lambda x, w: jconv.conv2d(x, w, padding="SAME", layout="NHWC", method="xla")
    if _ynnpack_fusions(lax_conv, x, w) == 0:
        pytest.skip("this jax's XLA:CPU runs lax's convolution without YNNPACK")
    conv, _ = _eigen_conv("NHWC", {"padding": "SAME"}, (2, 32, 16, 16), (32, 32, 3, 3))
    w_oihw = w.transpose(3, 2, 0, 1)
    assert _ynnpack_fusions(conv, x, w_oihw) == 0
    dx = lambda x, w: jax.vjp(lambda x: conv(x, w), x)[1](x)[0]
    assert _ynnpack_fusions(dx, x, w_oihw) == 0


# Shapes 'auto' runs by XLA_EIGEN on a CPU, and neighbours it does not (jconv/_auto.py,
# `_eigen_wins`), NHWC x and HWIO kernel shapes.
RULE_CASES = [
    ((4, 28, 28, 64), (3, 3, 64, 64), {"dilation": 2}, XLA_EIGEN),  # the bench's dilated
    ((8, 28, 28, 64), (7, 7, 64, 64), {}, XLA_EIGEN),
    ((8, 56, 56, 16), (5, 5, 16, 64), {}, XLA_EIGEN),
    ((16, 28, 28, 32), (3, 3, 32, 64), {"dilation": 2}, XLA_EIGEN),
    ((2, 56, 56, 64), (3, 3, 16, 64), {"groups": 4}, XLA_EIGEN),  # grouped, 144 products
    ((4, 28, 28, 256), (3, 3, 8, 256), {"groups": 32}, GROUPED_ELEMENTWISE),  # ResNeXt's
    ((4, 28, 28, 128), (3, 3, 4, 128), {"groups": 32}, GROUPED_ELEMENTWISE),  # 4 a group
    ((8, 14, 14, 48), (3, 3, 4, 96), {"groups": 12}, GROUPED_ELEMENTWISE),
    ((4, 56, 56, 128), (3, 3, 4, 128), {"groups": 32}, GROUPED_ELEMENTWISE),
    ((8, 14, 14, 384), (3, 3, 12, 384), {"groups": 32}, XLA_EIGEN),  # 108 products
    ((8, 14, 14, 160), (3, 3, 10, 160), {"groups": 16}, XLA_EIGEN),  # 10 channels a group
    ((4, 28, 28, 64), (7, 7, 2, 64), {"groups": 32}, GROUPED_ELEMENTWISE),  # 98 products
    ((4, 28, 28, 64), (5, 5, 4, 64), {"groups": 16}, GROUPED_ELEMENTWISE),  # 100 products
    ((4, 28, 28, 128), (5, 5, 8, 128), {"groups": 16}, XLA_EIGEN),  # 200 products
    ((4, 28, 28, 32), (7, 7, 4, 32), {"groups": 8}, TAPS_EIGEN_GRADIENTS),  # 196, small
    ((2, 56, 56, 64), (3, 3, 16, 64), {"groups": 4, "dilation": 2}, XLA_EIGEN),
    ((2, 56, 56, 64), (3, 3, 16, 64), {"groups": 4, "stride": 2}, "taps"),  # no extension
    ((2, 56, 56, 64), (3, 3, 2, 64), {"groups": 32, "stride": 2}, GROUPED_ELEMENTWISE),
    ((64, 32, 32, 16), (3, 3, 16, 16), {}, "xla"),  # 16 channels: no YNNPACK to avoid
    ((2, 64, 256, 16), (3, 3, 16, 64), {}, "xla"),  # the bench's wide16: a wide image
    ((64, 14, 14, 16), (3, 3, 16, 32), {"dilation": 2}, "xla"),  # 16 channels, 3x3
    ((64, 14, 14, 32), (3, 3, 32, 16), {"dilation": 2}, "xla"),  # 16 outputs, 3x3
    ((2, 64, 256, 16), (5, 5, 16, 64), {"dilation": 2}, "xla"),  # YNNPACK on two cores there
    ((16, 28, 28, 16), (7, 7, 16, 128), {}, "xla"),  # 128 outputs: a tie
    ((2, 64, 256, 8), (5, 5, 8, 128), {}, "xla"),  # 8 channels: lost with the gradient
    ((2, 56, 56, 64), (3, 3, 64, 128), {"stride": 2}, "taps"),  # no cheap extension
]


# bfloat16 and float16: GROUPED_ELEMENTWISE on up to 4 channels and 6 outputs a group, in
# float32.
BFLOAT16_RULE_CASES = [
    ((4, 28, 28, 128), (3, 3, 4, 128), {"groups": 32}, GROUPED_ELEMENTWISE),  # 4 and 4
    ((8, 28, 28, 48), (3, 3, 3, 96), {"groups": 16}, GROUPED_ELEMENTWISE),  # 3 and 6
    ((8, 14, 14, 48), (3, 3, 4, 96), {"groups": 12}, TAPS_EIGEN_GRADIENTS),  # 8 outputs
    ((4, 28, 28, 256), (3, 3, 8, 256), {"groups": 32}, XLA_EIGEN),  # ResNeXt's: 8 channels
    ((2, 56, 56, 64), (3, 3, 2, 64), {"groups": 32, "stride": 2}, "taps"),  # strided
]


@pytest.mark.parametrize("x_shape,k_shape,kwargs,expected", BFLOAT16_RULE_CASES)
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_rule_bfloat16(x_shape, k_shape, kwargs, expected, dtype):
    spec = _spec(x_shape, k_shape, dtype, padding="SAME", **kwargs)
    assert choose_method(spec) == expected
    if expected == GROUPED_ELEMENTWISE:  # computed in float32
        assert cpu_compute_dtype(spec, expected) == jnp.float32


@pytest.mark.parametrize("x_shape,k_shape,kwargs,expected", RULE_CASES)
def test_rule(x_shape, k_shape, kwargs, expected):
    spec = _spec(x_shape, k_shape, padding="SAME", **kwargs)
    assert choose_method(spec) == expected
    if expected == GROUPED_ELEMENTWISE:  # float16 takes bfloat16's rule (BFLOAT16_RULE_CASES)
        narrow = _spec(x_shape, k_shape, "float16", padding="SAME", **kwargs)
        assert (choose_method(narrow) == GROUPED_ELEMENTWISE) == (
            narrow.cg <= 4 and narrow.og <= 6 and narrow.stride == (1, 1)
        )
    if expected == XLA_EIGEN and spec.groups == 1:
        for dtype in ("bfloat16", "float16"):  # YNNPACK takes float32 only
            assert choose_method(_spec(x_shape, k_shape, dtype, padding="SAME", **kwargs)) != (
                XLA_EIGEN
            )


@pytest.mark.usefixtures("on_cpu")
@pytest.mark.parametrize(
    "groups,dtype,lowering,k",
    [
        (1, "float32", XLA_EIGEN, 5),
        (4, "float32", XLA_EIGEN, 5),
        (4, "bfloat16", XLA_EIGEN, 5),
        (6, "float32", TAPS_EIGEN_GRADIENTS, 7),
        (6, "float16", TAPS_EIGEN_GRADIENTS, 7),
        (8, "float16", GROUPED_ELEMENTWISE, 3),
        (6, "float32", GROUPED_ELEMENTWISE, 5),
        (8, "float32", GROUPED_ELEMENTWISE, 3),  # 3 channels, 3 outputs a group
        (8, "bfloat16", GROUPED_ELEMENTWISE, 3),  # computed in float32
    ],
)
def test_auto_runs_it(groups, dtype, lowering, k):
    """'auto' on a small shape of the rule (without groups float32 only: test_rule): the
    lowering forward and backward, against lax."""
    x_shape, k_shape = (2, 24, 10, 10), (24, 24 // groups, k, k)
    kwargs = {"padding": "SAME", "groups": groups}
    spec = check_conv_args(x_shape, k_shape, x_dtype=dtype, kernel_dtype=dtype, **kwargs)
    assert choose_method(spec) == lowering
    rng = np.random.default_rng(26)
    x = jnp.asarray(rng.standard_normal(x_shape), dtype)
    w = jnp.asarray(rng.standard_normal(k_shape), dtype)
    assert_auto_runs(lowering, x, w, **kwargs)


@needs_8_cpu_devices
@pytest.mark.usefixtures("on_cpu")
@pytest.mark.parametrize("scan", [False, True])
def test_on_a_split_batch(scan, monkeypatch):
    """x split along the batch over 8 devices in JAX's explicit sharding mode: the batch
    stays split, forward and input gradient, and both gradients agree with lax; scan: the
    kernel gradient by the depthwise scans (`grouped_dw`), which large images get."""
    from jconv import _method_xla_eigen

    if scan:
        monkeypatch.setattr(_method_xla_eigen, "SCAN_MIN_WINDOW_BYTES", 0)
        jax.clear_caches()  # no trace of the other case's
    x_shape, k_shape = (8, 24, 10, 10), (24, 6, 3, 3)
    kwargs = {"padding": "SAME", "groups": 4}
    rng = np.random.default_rng(27)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(k_shape).astype(np.float32)
    conv = lambda x, w: jconv.conv2d(x, w, **kwargs)
    assert_split_batch_like_lax(conv, x, w, **kwargs)


@needs_8_cpu_devices
@pytest.mark.usefixtures("on_cpu")
def test_inside_shard_map():
    """'auto' on a grouped shape inside shard_map, the batch split over two devices: y and
    the kernel's gradient (summed by JAX over the devices) against lax."""
    x_shape, k_shape = (4, 24, 10, 10), (24, 6, 3, 3)
    kwargs = {"padding": "SAME", "groups": 4}
    rng = np.random.default_rng(28)
    x, w = (rng.standard_normal(s).astype(np.float32) for s in (x_shape, k_shape))
    ct = rng.standard_normal((4, 24, 10, 10)).astype(np.float32)
    conv = lambda x, w: jconv.conv2d(x, w, **kwargs)
    assert lowerings_run(conv, x[:2], w) == {GROUPED_ELEMENTWISE}
    assert_shard_map_like_lax(conv, x, w, ct, **kwargs)
