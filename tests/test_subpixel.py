"""conv2d's input_dilation and negative padding (jconv/_subpixel.py), every method.

Against lax.conv_general_dilated with lhs_dilation at HIGHEST, and against a NumPy
loop over an explicitly dilated input (tests/reference.py); gradients, jit, vmap,
jvp, linear_transpose, remat and shard_map; the phase plan does no multiply-add on
an inserted zero.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jconv
from jconv._checks import check_conv_args
from jconv._subpixel import multiply_adds, plan
from tests._cpu import CPU_DEVICES, needs_8_cpu_devices
from tests.reference import assert_close, conv_input_dilated_numpy, to_nhwc

# (x shape NCHW, out channels, (kh, kw), conv2d keyword arguments with input_dilation)
CASES = [
    ((2, 3, 5, 4), 4, (3, 3), dict(input_dilation=2, padding=2)),  # 2x upsampling, 3x3
    ((1, 4, 4, 5), 2, (4, 4), dict(input_dilation=2, padding=((2, 3), (1, 2)))),  # DCGAN's
    ((2, 2, 5, 5), 3, (2, 3), dict(input_dilation=(3, 2), stride=(2, 1), padding=(1, 0))),
    ((1, 4, 6, 4), 4, (3, 2), dict(input_dilation=(2, 3), dilation=(2, 3), groups=2, padding=1)),
    ((2, 3, 4, 6), 2, (3, 3), dict(input_dilation=2, padding=((-1, 2), (1, -2)))),  # crops
    ((1, 2, 3, 3), 3, (1, 1), dict(input_dilation=3, padding=((0, 1), (2, 0)))),  # 1x1: zeros
    ((2, 3, 7, 6), 2, (3, 3), dict(padding=((-2, 1), (0, -1)))),  # crops, no input dilation
]
IDS = ["x2-3x3", "dcgan-4x4", "stride", "dilated-groups", "crops", "1x1-empty-phases", "crop"]


def make(case, seed=0, dtype=np.float32):
    x_shape, o, (kh, kw), kwargs = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((o, x_shape[1] // kwargs.get("groups", 1), kh, kw)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    return x, w, b


def lax_conv(x, w, *, input_dilation=1, stride=1, padding=0, dilation=1, groups=1, layout="NCHW"):
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)
    if isinstance(padding, int):
        padding = ((padding, padding),) * 2
    elif isinstance(padding[0], int):
        padding = tuple((p, p) for p in padding)
    return jax.lax.conv_general_dilated(
        x,
        w,
        pair(stride),
        padding,
        lhs_dilation=pair(input_dilation),
        rhs_dilation=pair(dilation),
        dimension_numbers=(layout, "OIHW" if layout == "NCHW" else "HWIO", layout),
        feature_group_count=groups,
        precision="highest",
    )


def numpy_reference(x, w, kwargs):
    """The NumPy loop over an explicitly dilated, cropped and padded x, in float64."""
    kw = dict(kwargs)
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)
    pads = kw.pop("padding")
    pads = ((pads, pads),) * 2 if isinstance(pads, int) else pads
    return conv_input_dilated_numpy(
        x,
        w,
        input_dilation=pair(kw.pop("input_dilation", 1)),
        stride=pair(kw.pop("stride", 1)),
        dilation=pair(kw.pop("dilation", 1)),
        pads=tuple(pair(p) for p in pads),
        **kw,
    )


def lax_is_exact(kwargs) -> bool:
    """XLA's CPU convolution is wrong on an axis padded negatively at one end and positively
    at the other without lhs_dilation (jax 0.10.2; see crop_undilated): no lax there."""
    return kwargs.get("input_dilation", 1) != 1


# 'taps' (the simplest lowering of a phase) on every case, each other method on a few,
# so that every method meets input dilation, crops and a whole-zero phase in turn.
FORWARD = {
    "taps": range(len(CASES)),
    "vmap": (3, 4),
    "im2col": (2, 5),
    "banded": (6,),
    "xla": (0, 4, 6),
    "auto": (1, 3, 6),
}
# Values and gradients ('winograd' has its phases here only).
GRADS = {
    "taps": (0, 4),
    "vmap": (3,),
    "im2col": (2,),
    "banded": (4,),
    "winograd": (1,),
    "auto": (2,),
}


def method_cases(table):
    pairs = [(m, i) for m, cases in table.items() for i in cases]
    return pytest.mark.parametrize(
        "method,case", [(m, CASES[i]) for m, i in pairs], ids=[f"{m}-{IDS[i]}" for m, i in pairs]
    )


@method_cases(FORWARD)
def test_forward_matches_numpy_and_lax(method, case):
    x, w, b = make(case)
    kw = case[3]
    expected = numpy_reference(x, w, kw) + b[:, None, None]
    layout = "NHWC" if method in ("taps", "banded") else "NCHW"  # both layouts, kept short
    if layout == "NHWC":
        x, w = to_nhwc(x, w)
        expected = expected.transpose(0, 2, 3, 1)
    y = jconv.conv2d(x, w, b, layout=layout, method=method, precision="highest", **kw)
    assert y.shape == expected.shape and y.dtype == np.float32
    assert_close(y, expected)
    if lax_is_exact(kw):
        expected = lax_conv(x, w, layout=layout, **kw)
        assert_close(y, expected + (b if layout == "NHWC" else b[:, None, None]))


@method_cases(GRADS)
def test_values_and_gradients_match_lax(method, case):
    x, w, _ = make(case, seed=2)
    kw = case[3]
    ct = np.random.default_rng(3).standard_normal(lax_conv(x, w, **kw).shape).astype(np.float32)

    def value_and_grads(conv, x, w, ct):
        return jax.value_and_grad(lambda x, w: jnp.vdot(conv(x, w), ct), (0, 1))(x, w)

    mine = lambda x, w: jconv.conv2d(x, w, method=method, precision="highest", **kw)
    ref = lambda x, w: lax_conv(x, w, **kw)
    got, expected = jax.jit(  # one program
        lambda *a: (value_and_grads(mine, *a), value_and_grads(ref, *a))
    )(x, w, ct)
    jax.tree.map(assert_close, got, expected)


def test_transformations():
    """jit of vmap (over x and over the kernel), jvp, linear_transpose and remat through
    the phases ('taps' for each), against the same transformations of lax."""
    case = ((1, 2, 4, 3), 3, (3, 2), dict(input_dilation=(2, 1), padding=((2, 1), (1, -1))))
    x, w, _ = make(case, seed=4)
    kw = case[3]
    mine = lambda x, w: jconv.conv2d(x, w, method="taps", precision="highest", **kw)
    ref = lambda x, w: lax_conv(x, w, **kw)
    ct = np.random.default_rng(5).standard_normal(ref(x, w).shape).astype(np.float32)
    ws = np.stack([w, -0.5 * w])

    def transformed(f):
        return {
            "vmap_x": jax.jit(jax.vmap(f, in_axes=(0, None)))(x[:, None], w),
            "vmap_w": jax.vmap(f, in_axes=(None, 0))(x, ws),
            "jvp": jax.jvp(f, (x, w), (0.5 * x, w)),
            "transpose": jax.linear_transpose(lambda x: f(x, w), x)(ct),
            "remat": jax.grad(jax.checkpoint(lambda w: jnp.vdot(f(x, w), ct)))(w),
        }

    got, expected = transformed(mine), transformed(ref)
    for name in got:
        jax.tree.map(assert_close, got[name], expected[name])


def test_nan_and_inf_in_x_reach_the_outputs_lax_reaches():
    """A NaN or Inf in x spreads to exactly lax's outputs: never to an output of a phase
    whose taps all land on inserted zeros (a 1x1 kernel at input dilation 3)."""
    for case in (CASES[0], CASES[5]):
        x, w, _ = make(case, seed=6)
        x[0, 1, 1, 2], x[-1, 0, 2, 0] = np.nan, np.inf
        y = jconv.conv2d(x, w, method="taps", **case[3])
        expected = lax_conv(x, w, **case[3])
        np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
        np.testing.assert_array_equal(np.isposinf(y), np.isposinf(expected))
        assert np.isnan(y).any() and np.isfinite(y).any()


def test_every_phase_reading_only_zeros_gives_zeros():
    """Pixels 0 and 3 of a 2-pixel x dilated by 3, both cropped off: a 1x1 kernel reads only
    inserted zeros, so the output is zeros (NaN in x or not, as in lax), in its dtype."""
    x = np.full((2, 2, 2, 2), np.nan, np.float32)
    w = np.ones((3, 2, 1, 1), np.float16)
    y = jconv.conv2d(x, w, input_dilation=3, padding=-1, method="taps")
    assert y.shape == (2, 3, 2, 2) and y.dtype == np.float32
    np.testing.assert_array_equal(y, np.zeros(y.shape))


@needs_8_cpu_devices
@pytest.mark.usefixtures("on_cpu")
def test_explicit_sharding_mode():
    """A batch-sharded x in JAX's explicit sharding mode: the phases (a zero phase included)
    keep the batch sharded, forward and kernel gradient. Under jit, 'xla' and 'auto' too,
    with the kernel a NumPy array: lax's own kernel gradient asks for an out_sharding when
    the kernel is on no mesh (jax 0.10.2), and jconv places it on x's."""
    from jax.sharding import AxisType, PartitionSpec

    from tests._cpu import cpu_mesh

    mesh = cpu_mesh((8,), ("d",), axis_types=(AxisType.Explicit,))
    case = ((8, 2, 3, 3), 3, (1, 1), dict(input_dilation=3, padding=((0, 1), (2, 0))))
    x, w, _ = make(case, seed=10)
    kw = case[3]
    conv = lambda x, w: jconv.conv2d(x, w, method="taps", precision="highest", **kw)
    with jax.set_mesh(mesh):
        xs = jax.device_put(x, PartitionSpec("d"))
        y = conv(xs, w)
        grad_w = jax.grad(lambda w: jnp.sum(conv(xs, w) ** 2))(w)
        y_auto = jconv.conv2d(xs, w, precision="highest", **kw)
    assert y.sharding.spec == y_auto.sharding.spec == PartitionSpec("d", None, None, None)
    expected = numpy_reference(x, w, kw)
    assert_close(y, expected)
    assert_close(y_auto, expected)
    expected_grad = jax.grad(lambda w: jnp.sum(lax_conv(x, w, **kw) ** 2))(w)
    assert_close(grad_w, expected_grad)
    for method in ("xla", "auto"):
        with jax.set_mesh(mesh):
            loss = lambda w, x, m=method: jnp.sum(jconv.conv2d(x, w, method=m, **kw) ** 2)
            grad_w = jax.jit(jax.grad(loss))(w, xs)
        assert_close(grad_w, expected_grad)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_and_empty_phases_keep_the_dtype(dtype):
    x, w, b = make(CASES[5], seed=7)
    x, w, b = (jnp.asarray(a, dtype) for a in (x, w, b))
    y = jconv.conv2d(x, w, b, precision="highest", **CASES[5][3])
    assert y.dtype == dtype
    expected = lax_conv(x.astype(np.float32), w.astype(np.float32), **CASES[5][3])
    assert_close(y, expected + b.astype(np.float32)[:, None, None], dtype)


def test_pallas_runs_each_phase():
    """'pallas' (in interpret mode here) on a small 2-phase problem, bias added after."""
    case = ((1, 2, 3, 4), 2, (2, 2), dict(input_dilation=(2, 1), padding=1))
    x, w, b = make(case, seed=8)
    y = jconv.conv2d(x, w, b, method="pallas", precision="highest", **case[3])
    assert_close(y, lax_conv(x, w, **case[3]) + b[:, None, None])


@pytest.mark.parametrize(
    "h,d,s,k,kd,pads",
    [
        (5, 2, 1, 3, 1, (2, 2)),
        (4, 3, 2, 4, 2, (1, -1)),
        (3, 2, 3, 2, 1, (0, 5)),
        (6, 1, 2, 3, 1, (-2, 1)),
    ],
)
def test_plan_skips_inserted_zeros(h, d, s, k, kd, pads):
    """Per axis, the phases cover every output once, and each keeps exactly the taps that
    land on a pixel of x or on the padding: counted against a brute-force walk."""
    spec = check_conv_args(
        (1, 1, h, 1),
        (1, 1, k, 1),
        stride=(s, 1),
        padding=(pads, (0, 0)),
        dilation=(kd, 1),
        input_dilation=(d, 1),
        transposed_ok=True,
    )
    axis, _ = plan(spec)
    outputs = sorted(ph.offset + axis.period * t for ph in axis.phases for t in range(ph.count))
    assert outputs == list(range(spec.out_hw[0]))
    lo = pads[0]
    useful = 0
    for m, i in itertools.product(range(spec.out_hw[0]), range(k)):
        q = m * s + i * kd - lo  # position in the dilated, uncropped input
        on_pixel = q % d == 0 and 0 <= q // d < h
        in_padding = q < 0 or q > (h - 1) * d
        useful += on_pixel or in_padding
    assert multiply_adds(spec) <= useful  # phases wholly in the padding are skipped
    assert multiply_adds(spec) >= sum(
        1
        for m, i in itertools.product(range(spec.out_hw[0]), range(k))
        if (m * s + i * kd - lo) % d == 0 and 0 <= (m * s + i * kd - lo) // d < h
    )


@needs_8_cpu_devices
@pytest.mark.usefixtures("on_cpu")
def test_inside_shard_map():
    from jax.sharding import PartitionSpec as P

    mesh = jax.sharding.Mesh(np.array(CPU_DEVICES[:2]), ("data",))
    x, w, _ = make(CASES[0], seed=9)
    f = jax.shard_map(
        lambda x: jconv.conv2d(x, w, precision="highest", **CASES[0][3]),
        mesh=mesh,
        in_specs=P("data"),
        out_specs=P("data"),
    )
    assert_close(jax.jit(f)(x), lax_conv(x, w, **CASES[0][3]))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(input_dilation=2, padding="SAME"), "explicit amounts"),
        (dict(input_dilation=2, padding=1, padding_mode="reflect"), "pads with zeros only"),
        (dict(input_dilation=0, padding=1), "input_dilation must be at least 1"),
        (dict(input_dilation=(2, True), padding=1), "input_dilation must be an int or a pair"),
        (dict(padding=-1, padding_mode="circular"), "negative padding .* padding_mode='zeros'"),
        (dict(input_dilation=2, padding=((-9, 0), (0, 0))), "crops all of the input's 9"),
        (dict(padding=((0, 0), (-3, -3))), "crops all"),
        (dict(input_dilation=2, padding=-4), "larger than the padded input"),
    ],
)
def test_bad_arguments(kwargs, match):
    x, w, _ = make(((1, 2, 5, 6), 2, (3, 3), {}))
    with pytest.raises((ValueError, TypeError), match=match):
        jconv.conv2d(x, w, **kwargs)


def test_sharded_conv2d_refuses_input_dilation():
    x, w, _ = make(((8, 2, 5, 6), 2, (3, 3), {}))
    mesh = jax.sharding.Mesh(np.array(CPU_DEVICES[:1]), ("d",))
    with pytest.raises(TypeError, match="unexpected keyword argument.*input_dilation"):
        jconv.sharding.sharded_conv2d(
            x, w, mesh=mesh, strategy="batch", input_dilation=2, padding=1
        )
    with pytest.raises(ValueError, match="padding must not be negative"):
        jconv.sharding.sharded_conv2d(x, w, mesh=mesh, strategy="batch", padding=-1)


def test_flops_count_the_phases():
    """conv2d_flops counts what the phases do: for a 2x upsampling by a 2x2 kernel at
    stride 2 (each output one tap), a quarter of the dilated input's count."""
    shape, kernel = (1, 8, 4, 4), (3, 8, 2, 2)
    got = jconv.conv2d_flops(shape, kernel, input_dilation=2, padding=1)
    assert got == 2 * 3 * 8 * 8 * 8 * 1  # N O Ho Wo, C, one tap per output
    assert jconv.conv2d_flops(shape, kernel, padding=((-1, 0), (0, 0))) == 2 * 3 * 8 * 2 * 3 * 4
