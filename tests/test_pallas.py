"""method='pallas': its kernels in interpret mode against lax, its transformations, and its
lowering for CUDA.

Off a GPU the kernels run in Pallas's interpret mode, about a second of compile per
kernel, so the shared matrices of test_conv2d.py leave 'pallas' out and this file
covers it on a selection of their cases, each checked forward and through both
gradients in one compile. The CUDA lowering test catches what interpret mode lets
pass (Triton's power-of-two block shapes, for one).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jconv
from jconv import _pallas_triton
from jconv._pallas_geometry import ConvGeometry, input_grad_phases
from jconv._pallas_tuning import (
    BlockConfig,
    config_for,
    default_config,
    problem_class,
    table_from_json,
    table_to_json,
)
from tests._cpu import CPU_DEVICES
from tests.reference import assert_close, conv_lax, conv_numpy

HIGHEST = {"precision": "highest"}

# (x shape in `layout`, kernel shape in `layout`'s order, conv2d keyword arguments)
CASES = {
    "stride2-same-few-channels": (
        (2, 7, 8, 3),
        (3, 3, 3, 4),
        dict(stride=2, padding="SAME", layout="NHWC"),
    ),
    "dilated-strided-masked-channels": (
        (1, 20, 6, 7),
        (36, 20, 2, 3),
        dict(stride=(1, 2), dilation=(2, 1), padding=((1, 0), (2, 1))),
    ),
    "depthwise-unbatched-reflect": (
        (6, 8, 6),
        (6, 1, 3, 3),
        dict(groups=6, padding=((1, 2), (2, 0)), padding_mode="reflect"),
    ),
    "groups-circular": (
        (1, 7, 7, 32),
        (3, 3, 16, 8),
        dict(groups=2, padding=1, padding_mode="circular", layout="NHWC"),
    ),
    "1x1-stride2": ((2, 33, 5, 6), (17, 33, 1, 1), dict(stride=2)),  # phases with no taps
}


def arrays(case, dtype=np.float32, seed=0):
    """Fresh random x, kernel, bias and output cotangent for a case."""
    x_shape, k_shape, kwargs = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(k_shape).astype(dtype)
    o = k_shape[0] if kwargs.get("layout", "NCHW") == "NCHW" else k_shape[-1]
    b = rng.standard_normal(o).astype(dtype)
    y_shape = jax.eval_shape(lambda x, w: jconv.conv2d(x, w, method="xla", **kwargs), x, w).shape
    ct = rng.standard_normal(y_shape).astype(dtype)
    return x, w, b, ct


def reference(x, w, b, kwargs):
    """lax at HIGHEST in float32, the bias added: what every result is compared with."""
    f32 = [jnp.asarray(v, jnp.float32) for v in (x, w, b)]
    y = conv_lax(f32[0], f32[1], **kwargs)
    channel = -1 if kwargs.get("layout") == "NHWC" else -3
    return y + jnp.expand_dims(f32[2], [a for a in range(-1, -y.ndim - 1, -1) if a != channel])


def value_and_grads(conv, x, w, b, ct):
    """(y, (dx, dw, db)) of <conv(x, w, b), ct>, under one jit."""

    @jax.jit
    def run(x, w, b, ct):
        y, vjp = jax.vjp(conv, x, w, b)
        return y, vjp(ct.astype(y.dtype))

    return run(x, w, b, ct)


@pytest.mark.parametrize("name", CASES)
def test_forward_and_gradients_match_lax(name):
    case = CASES[name]
    kwargs = case[2]
    x, w, b, ct = arrays(case, seed=len(name))
    y, grads = value_and_grads(
        lambda x, w, b: jconv.conv2d(x, w, b, method="pallas", **HIGHEST, **kwargs), x, w, b, ct
    )
    y_ref, grads_ref = value_and_grads(lambda x, w, b: reference(x, w, b, kwargs), x, w, b, ct)
    assert y.shape == y_ref.shape and y.dtype == jnp.float32
    assert_close(y, y_ref)
    for g, e in zip(grads, grads_ref):
        assert g.shape == e.shape and g.dtype == jnp.float32
        assert_close(g, e)


def test_matches_numpy_loop():
    """Against the independent NumPy loop, sharing no code with lax or jconv."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 6, 7)).astype(np.float32)
    w = rng.standard_normal((6, 2, 3, 2)).astype(np.float32)
    pads = ((2, 0), (1, 2))
    y = jconv.conv2d(
        x, w, stride=(2, 1), dilation=(1, 2), padding=pads, groups=2, method="pallas", **HIGHEST
    )
    assert_close(y, conv_numpy(x, w, stride=(2, 1), dilation=(1, 2), pads=pads, groups=2))


@pytest.mark.parametrize("dtype,preferred", [(jnp.bfloat16, None), (jnp.float16, jnp.float32)])
def test_half_precision_accumulates_in_float32(dtype, preferred):
    """Half-precision inputs: products summed in float32, rounded once (or not at all)."""
    case = CASES["stride2-same-few-channels"]
    kwargs = dict(case[2], preferred_element_type=preferred)
    x, w, b, ct = (a.astype(dtype) for a in arrays(case, seed=3))
    y, grads = value_and_grads(
        lambda x, w, b: jconv.conv2d(x, w, b, method="pallas", **kwargs), x, w, b, ct
    )
    y_ref, grads_ref = value_and_grads(lambda x, w, b: reference(x, w, b, kwargs), x, w, b, ct)
    assert y.dtype == (preferred or dtype) and all(g.dtype == dtype for g in grads)
    assert_close(y, y_ref, preferred or dtype, scale=10.0)
    for g, e in zip(grads, grads_ref):
        assert_close(g, e, dtype)


# --- transformations: everything lax's convolution supports ---

T_X = np.random.default_rng(5).standard_normal((2, 3, 7, 6)).astype(np.float32)
T_W = np.random.default_rng(6).standard_normal((4, 3, 3, 3)).astype(np.float32)
T_KW = dict(stride=(2, 1), padding=1, **HIGHEST)


def pallas(x, w):
    return jconv.conv2d(x, w, method="pallas", **T_KW)


def lax(x, w):
    return jconv.conv2d(x, w, method="xla", **T_KW)


def test_jvp_forward_mode():
    tangents = (np.ones_like(T_X), 0.5 * T_W)
    got = jax.jit(lambda *a: jax.jvp(pallas, a[:2], a[2:]))(T_X, T_W, *tangents)
    expected = jax.jvp(lax, (T_X, T_W), tangents)
    for g, e in zip(got, expected):
        assert_close(g, e)


def test_vmap_over_samples_and_over_kernels():
    """A mapped x joins the batch; a mapped kernel (with x) becomes more groups."""
    per_sample = jax.jit(jax.vmap(lambda x: pallas(x, T_W)))(T_X)
    assert_close(per_sample, lax(T_X, T_W))
    ws = np.stack([T_W, -2.0 * T_W[::-1]])
    pairs = jax.jit(jax.vmap(pallas))(np.stack([T_X, 3.0 * T_X]), ws)
    assert_close(pairs, jax.vmap(lax)(np.stack([T_X, 3.0 * T_X]), ws))


def test_per_sample_gradients():
    """vmap of grad: each sample's kernel gradient (the kernel-gradient product, vmapped)."""

    def grad_w(f):
        return jax.vmap(jax.grad(lambda x, w: jnp.sum(f(x[None], w) ** 2), argnums=1), (0, None))

    assert_close(jax.jit(grad_w(pallas))(T_X, T_W), grad_w(lax)(T_X, T_W))


def test_linear_transpose_and_second_order():
    ct = np.random.default_rng(7).standard_normal(lax(T_X, T_W).shape).astype(np.float32)
    (got,) = jax.linear_transpose(lambda x: pallas(x, T_W), T_X)(ct)
    (expected,) = jax.linear_transpose(lambda x: lax(x, T_W), T_X)(ct)
    assert_close(got, expected)

    def hvp(f):  # forward over reverse: the transposed products, differentiated again
        g = jax.grad(lambda w: jnp.sum(jnp.sin(f(T_X, w))))
        return lambda w, v: jax.jvp(g, (w,), (v,))[1]

    assert_close(jax.jit(hvp(pallas))(T_W, T_W[::-1]), hvp(lax)(T_W, T_W[::-1]))


def test_remat_and_shard_map():
    from jax.sharding import PartitionSpec as P

    loss = lambda f: jax.checkpoint(lambda w: jnp.sum(f(T_X, w) ** 2))
    assert_close(jax.jit(jax.grad(loss(pallas)))(T_W), jax.grad(loss(lax))(T_W))
    mesh = jax.sharding.Mesh(np.array(CPU_DEVICES[:2]), ("data",))  # 2 devices on any machine
    step = lambda f: jax.shard_map(
        # w is replicated: shard_map sums its gradient over the devices itself
        lambda x, w: jax.grad(lambda w: jnp.sum(f(x, w) ** 2))(w),
        mesh=mesh,
        in_specs=(P("data"), P()),
        out_specs=P(),
    )
    assert_close(
        jax.jit(step(pallas))(T_X, T_W), jax.grad(lambda w: jnp.sum(lax(T_X, w) ** 2))(T_W)
    )


def test_transposing_with_a_bias_is_refused():
    f = lambda x: jconv.conv2d(x, T_W, np.ones(4, np.float32), method="pallas")
    with pytest.raises(NotImplementedError, match="affine"):
        jax.linear_transpose(f, T_X)(np.ones(jax.eval_shape(f, T_X).shape, np.float32))


def test_too_many_pixels_is_refused():
    """Pixel indices are int32: a batch with 2**31 pixels or more is refused by name."""
    x = jax.ShapeDtypeStruct((2**17, 128, 128, 1), jnp.bfloat16)
    w = jax.ShapeDtypeStruct((3, 3, 1, 8), jnp.bfloat16)
    with pytest.raises(NotImplementedError, match="int32"):
        jax.eval_shape(lambda x, w: jconv.conv2d(x, w, layout="NHWC", method="pallas"), x, w)


# --- the kernels with settings other than the defaults ---


def geometry_lax(g: ConvGeometry, x, w):
    """lax at HIGHEST on a geometry's NHWC x and HWIO kernel: the kernels' reference."""
    return jax.lax.conv_general_dilated(
        x, w, g.stride, g.pads, rhs_dilation=g.dilation, precision="highest",
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=g.groups,
    )  # fmt: skip


GEOMETRY = ConvGeometry(2, 6, 7, 40, 24, 3, 2, 2, (2, 1), (1, 2), ((1, 0), (2, 1)))
DEPTHWISE_GEOMETRY = ConvGeometry(2, 7, 9, 24, 24, 2, 3, 24, (2, 1), (1, 2), ((1, 0), (2, 1)))


OTHER_SETTINGS = {
    "small": {  # 20 input and 12 output channels per group: masked blocks of 16
        "y": BlockConfig(16, 16, 16),
        "x": BlockConfig(32, 16, 16, flat=True),
        "w": BlockConfig(16, 16, 16, split_k=3),
    },
    "wide": {  # the kinds the tuned table holds: 256 rows over a flattened contraction,
        # 128 pixels a step of the kernel gradient (here all rows of a block but a few masked)
        "y": BlockConfig(256, 16, 64, 8, 3, flat=True),
        "x": BlockConfig(256, 16, 32, 8, 3, flat=True),
        "w": BlockConfig(16, 16, 128, 4, 4, split_k=2),
    },
    "serial": {  # the kernel gradient's splits added in place, in turn
        "y": BlockConfig(16, 16, 16),
        "x": BlockConfig(16, 16, 16),
        "w": BlockConfig(16, 16, 16, split_k=3, serial=True),
    },
    "tap-groups": {  # the kernel gradient's 6 taps as groups of 4: the last group half empty
        "y": BlockConfig(16, 16, 16),
        "x": BlockConfig(16, 16, 16),
        "w": BlockConfig(16, 16, 16, split_k=3, tap_group=4),
    },
}


@pytest.mark.parametrize("settings", OTHER_SETTINGS)
def test_other_block_settings(settings):
    """Small and wide blocks, flattened contractions and split-K kernel gradients give
    lax's answer."""
    configs = OTHER_SETTINGS[settings]
    g = GEOMETRY
    rng = np.random.default_rng(8)
    x, w = rng.standard_normal(g.x_shape()), rng.standard_normal(g.w_shape())
    x, w = x.astype(np.float32), w.astype(np.float32)
    dy = rng.standard_normal(g.y_shape()).astype(np.float32)
    kw = dict(out_dtype=jnp.float32, precision="highest", interpret=True)

    @jax.jit
    def products(x, w, dy):
        return (
            _pallas_triton.forward(x, w, None, g, config=configs["y"], **kw),
            _pallas_triton.input_grad(dy, w, g, config=configs["x"], **kw),
            _pallas_triton.kernel_grad(x, dy, g, config=configs["w"], **kw),
        )

    lax_conv = functools.partial(geometry_lax, g)

    y_ref, vjp = jax.vjp(lax_conv, x, w)
    for got, expected in zip(products(x, w, dy), (y_ref, *vjp(dy))):
        assert_close(got, expected)


ROLLING = {  # depthwise geometries at stride 1 (and one at stride 2, which does not roll)
    "3x3-same": ConvGeometry(2, 9, 7, 20, 20, 3, 3, 20, (1, 1), (1, 1), ((1, 1), (1, 1))),
    "2x3-uneven": ConvGeometry(2, 7, 9, 20, 20, 2, 3, 20, (1, 1), (1, 1), ((1, 0), (2, 1))),
    "3x3-valid-wide": ConvGeometry(1, 8, 20, 20, 20, 3, 3, 20, (1, 1), (1, 1), ((0, 0), (0, 0))),
    "5x4-wide-pads": ConvGeometry(1, 11, 6, 20, 20, 5, 4, 20, (1, 1), (1, 1), ((2, 2), (1, 2))),
    "1x1": ConvGeometry(2, 5, 5, 20, 20, 1, 1, 20, (1, 1), (1, 1), ((0, 0), (0, 0))),
    "stride2": ConvGeometry(2, 7, 9, 20, 20, 3, 3, 20, (2, 2), (1, 1), ((1, 1), (1, 1))),
}


@pytest.mark.parametrize("name", ROLLING)
def test_depthwise_rows_rolling_down_the_image(name):
    """The depthwise forward pass (with its bias), input gradient and kernel gradient that
    roll down the rows (config.rows) give lax's answer: strips of 3 rows, the last one
    short, columns in masked blocks of 16 (two blocks on the wide image), channels in masked
    blocks of 16; kernels of 1 to 5 rows, uneven and VALID padding. At stride 2 the other
    kernels run instead."""
    g = ROLLING[name]
    config = BlockConfig(16, 16, 16, rows=3)
    assert _pallas_triton.rolls_rows(g, config) == (g.stride == (1, 1))
    rng = np.random.default_rng(11)
    x = rng.standard_normal(g.x_shape()).astype(np.float32)
    w = rng.standard_normal(g.w_shape()).astype(np.float32)
    b = rng.standard_normal((g.o,)).astype(np.float32)
    dy = rng.standard_normal(g.y_shape()).astype(np.float32)
    kw = dict(config=config, out_dtype=jnp.float32, precision="highest", interpret=True)

    @jax.jit
    def products(x, w, b, dy):
        return (
            _pallas_triton.forward(x, w, b, g, **kw),
            _pallas_triton.input_grad(dy, w, g, **kw),
            _pallas_triton.kernel_grad(x, dy, g, **kw),
        )

    lax_conv = functools.partial(geometry_lax, g)

    y_ref, vjp = jax.vjp(lax_conv, x, w)
    y, dx, dw = products(x, w, b, dy)
    dx_ref, dw_ref = vjp(dy)
    assert_close(y, y_ref + b)
    assert_close(dx, dx_ref)
    assert_close(dw, dw_ref)


def test_depthwise_taps_unrolled():
    """The depthwise forward pass (with its bias) and input gradient with the taps
    unrolled (flat) give lax's answer: 2x3 taps, stride (2, 1) (the input gradient's
    phases), dilation (1, 2), uneven padding, channels in masked blocks."""
    g = DEPTHWISE_GEOMETRY
    config = BlockConfig(16, 16, 16, flat=True)
    rng = np.random.default_rng(12)
    x = rng.standard_normal(g.x_shape()).astype(np.float32)
    w = rng.standard_normal(g.w_shape()).astype(np.float32)
    b = rng.standard_normal((g.o,)).astype(np.float32)
    dy = rng.standard_normal(g.y_shape()).astype(np.float32)
    kw = dict(config=config, out_dtype=jnp.float32, precision="highest", interpret=True)
    y = jax.jit(lambda x, w, b: _pallas_triton.forward(x, w, b, g, **kw))(x, w, b)
    dx = jax.jit(lambda dy, w: _pallas_triton.input_grad(dy, w, g, **kw))(dy, w)

    lax_conv = lambda x: geometry_lax(g, x, w)

    y_ref, vjp = jax.vjp(lax_conv, x)
    assert_close(y, y_ref + b)
    assert_close(dx, vjp(dy)[0])


@pytest.mark.parametrize(
    "geometry,config",
    [
        (GEOMETRY, BlockConfig(16, 16, 16, split_k=3, serial=True)),
        (GEOMETRY, BlockConfig(16, 16, 32, split_k=2, flat=True, serial=True)),
        (GEOMETRY, BlockConfig(16, 16, 16, split_k=3, serial=True, tap_group=3)),
        (DEPTHWISE_GEOMETRY, BlockConfig(16, 16, 16, split_k=3, serial=True)),
        (DEPTHWISE_GEOMETRY, BlockConfig(16, 16, 16, split_k=4, flat=True, serial=True)),
    ],
    ids=["groups", "groups-flat", "groups-tap-groups", "depthwise", "depthwise-all-taps"],
)
def test_serial_splits_each_add_once_to_their_own_tile(geometry, config):
    """Every program of a serial kernel gradient passes its tile on exactly once: each
    tile's counter ends at split_k. Two tiles sharing a counter (a wrong tile index,
    groups forgotten, say) would end above it; in interpret mode the programs run one
    by one in grid order, so the wait itself is never exercised here."""
    g = geometry
    rng = np.random.default_rng(10)
    x = rng.standard_normal(g.x_shape()).astype(np.float32)
    dy = rng.standard_normal(g.y_shape()).astype(np.float32)
    kw = dict(config=config, interpret=True)
    sums, counters = jax.jit(lambda x, dy: _pallas_triton.kernel_grad_sums(x, dy, g, **kw))(x, dy)
    assert sums.shape == (1, *g.w_shape()) and counters is not None
    np.testing.assert_array_equal(np.asarray(counters), config.split_k)
    plain = dataclasses.replace(config, serial=False)
    partials, none = _pallas_triton.kernel_grad_sums(x, dy, g, config=plain, interpret=True)
    assert none is None and partials.shape == (config.split_k, *g.w_shape())
    assert_close(sums[0], partials.sum(0))


# --- geometry and tuning: no kernels run ---


AXES = [  # (size, k, s, d, pad) with a non-empty output
    a
    for a in itertools.product([5, 8], [1, 3, 4], [1, 2, 3], [1, 2], [0, 2])
    if a[0] + 2 * a[4] >= (a[1] - 1) * a[3] + 1
]


@pytest.mark.parametrize(
    "config",
    [
        BlockConfig(16, 16, 16, split_k=3, flat=True),
        BlockConfig(16, 32, 32, 8, 2, flat=True),
        BlockConfig(16, 16, 16, split_k=3, flat=True, serial=True),
        BlockConfig(16, 16, 16, split_k=2, serial=True),
    ],
    ids=["split3", "one-split", "serial-all-taps", "serial-per-tap"],
)
def test_depthwise_kernel_gradient_with_every_tap_in_one_program(config):
    """The depthwise kernel gradient's all-taps program (flat) gives lax's dw: 2x3 taps,
    stride (2, 1), dilation (1, 2), uneven padding, channels in masked blocks; so do
    splits that add in place (serial), with a program per tap or one for every tap."""
    g = DEPTHWISE_GEOMETRY
    rng = np.random.default_rng(9)
    x = rng.standard_normal(g.x_shape()).astype(np.float32)
    w = rng.standard_normal(g.w_shape()).astype(np.float32)
    dy = rng.standard_normal(g.y_shape()).astype(np.float32)
    kw = dict(out_dtype=jnp.float32, precision="highest", interpret=True)
    got = jax.jit(lambda x, dy: _pallas_triton.kernel_grad(x, dy, g, config=config, **kw))(x, dy)

    lax_conv = lambda w: geometry_lax(g, x, w)

    (expected,) = jax.vjp(lax_conv, w)[1](dy)
    assert_close(got, expected)


@pytest.mark.parametrize("size,k,s,d,pad", AXES)
def test_input_gradient_phases_cover_every_tap_once(size, k, s, d, pad):
    """Each (input position, tap) pair that meets an output is read by exactly one phase."""
    out = (size + 2 * pad - (k - 1) * d - 1) // s + 1
    expected = {
        (a * s + i * d - pad, i, a)
        for a in range(out)
        for i in range(k)
        if 0 <= a * s + i * d - pad < size
    }
    seen = []
    for p in input_grad_phases(size, out, k, s, d, pad):
        for b in range(p.count):
            for u in range(p.taps):
                src = p.in_start + b * p.in_step + u * p.tap_in_step
                if 0 <= src < p.in_size:
                    seen.append((p.out_start + b * p.out_step, p.tap_start + u * p.tap_step, src))
    assert sorted(seen) == sorted(expected)
    phases = input_grad_phases(size, out, k, s, d, pad)
    covered = sorted(p.out_start + b * p.out_step for p in phases for b in range(p.count))
    assert covered == list(range(size))  # every input row is written, zero or not


def test_block_settings_are_checked():
    with pytest.raises(ValueError, match="power of two"):
        BlockConfig(48, 16, 16)
    with pytest.raises(ValueError, match="power of two"):
        BlockConfig(16, 8, 16)
    with pytest.raises(ValueError, match="launch"):
        BlockConfig(16, 16, 16, num_warps=3)


def test_table_round_trips_and_is_used(monkeypatch):
    from jconv import _pallas_tuning

    geo = ConvGeometry(64, 28, 28, 128, 128, 3, 3, 1, (1, 1), (1, 1), ((1, 1), (1, 1)))
    key = problem_class("y", geo, jnp.bfloat16)
    assert key == "y:bfloat16:k128:n128:t9:s1:m65536:g1"
    entry = BlockConfig(64, 128, 32, num_warps=8, num_stages=4)
    table = {key: entry, problem_class("w", geo, jnp.bfloat16): BlockConfig(64, 64, 64, split_k=8)}
    assert table_from_json(table_to_json(table)) == table
    monkeypatch.setattr(_pallas_tuning, "TABLE", table)
    assert config_for("y", geo, jnp.bfloat16) == entry
    assert config_for("y", geo, jnp.float32) == default_config("y", geo, jnp.float32)


def test_tuned_table_covers_every_bench_layer():
    """The committed table has the bfloat16 settings of all three kernels of each plain bench
    layer (a transposed layer's sub-pixel phases run with the default settings)."""
    from experiments.bench_conv import SUITE
    from experiments.tune_pallas import layer_geometry
    from jconv._pallas_tuning import TABLE

    classes = {
        problem_class(product, layer_geometry(layer, layer.batch_gpu), jnp.bfloat16)
        for layer in SUITE
        if not layer.transposed
        for product in "yxw"
    }
    assert classes == set(TABLE)
    assert table_from_json(table_to_json(TABLE)) == TABLE


def test_default_settings_fit_every_bench_layer():
    """Powers of two, at least 16, flat for few channels (but depthwise), SMs kept busy."""
    from experiments.bench_conv import SUITE

    for layer, dtype, product in itertools.product(SUITE, ["bfloat16", "float32"], "yxw"):
        pad = layer.padding if isinstance(layer.padding, int) else (layer.k - 1) // 2
        pad = 0 if layer.padding == "VALID" else pad
        geo = ConvGeometry(
            layer.batch_gpu, layer.hw, layer.hw, layer.c, layer.o, layer.k, layer.k,
            layer.groups, (layer.stride,) * 2, (1, 1), ((pad, pad), (pad, pad)),
        )  # fmt: skip
        config = default_config(product, geo, dtype)  # BlockConfig checks its own sizes
        k = geo.og if product == "x" else geo.cg
        assert config.flat == (k < 16 and not geo.depthwise), (layer.name, product)
        if geo.depthwise and product == "w" and layer.stride == 1:  # rolling down the rows
            assert config.rows == layer.hw and config.block_n == 32, config
        elif geo.depthwise:  # elementwise kernels: all 128 channels in one block
            assert config.block_n == 128 and not config.rows
    geo = ConvGeometry(64, 14, 14, 256, 256, 3, 3, 1, (1, 1), (1, 1), ((1, 1), (1, 1)))
    w_config = default_config("w", geo, "bfloat16")
    programs = (
        geo.kh
        * geo.kw
        * math.ceil(geo.cg / w_config.block_m)
        * math.ceil(geo.og / w_config.block_n)
    )
    assert programs * w_config.split_k >= 132  # every SM of an H100 has work


# --- lowering for CUDA from this machine ---

CUDA_LAYERS = {  # bench layers at small batch, and the odd shapes of CASES
    "resnet28": ((2, 28, 28, 128), (3, 3, 128, 128), dict(padding="SAME")),
    "stride2": ((2, 56, 56, 64), (3, 3, 64, 128), dict(stride=2, padding="SAME")),
    "lenet1": ((2, 28, 28, 1), (5, 5, 1, 6), dict(padding=2)),
    "depthwise": ((2, 56, 56, 128), (3, 3, 1, 128), dict(groups=128, padding="SAME")),
    "lesson": ((1, 68, 68, 100), (5, 5, 100, 100), dict()),
}


def _cuda_module(fn, *arg_types) -> str:
    """fn jitted and exported for CUDA from this machine, as StableHLO text (its Triton
    kernels are custom calls, which the export's safety check must be told to allow)."""
    exported = jax.export.export(
        jax.jit(fn),
        platforms=["cuda"],
        disabled_checks=[jax.export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")],
    )(*arg_types)
    return exported.mlir_module()


@pytest.mark.filterwarnings("ignore:The Pallas Triton backend is deprecated")  # jax >= 0.11
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
@pytest.mark.parametrize("name", CUDA_LAYERS)
def test_lowers_for_cuda(name, dtype):
    """Forward and both gradients lower to Triton kernels for CUDA, from a CPU-only machine."""
    x_shape, k_shape, kwargs = CUDA_LAYERS[name]
    x = jax.ShapeDtypeStruct(x_shape, dtype)
    w = jax.ShapeDtypeStruct(k_shape, dtype)
    b = jax.ShapeDtypeStruct((k_shape[-1],), dtype)

    def step(x, w, b):
        def loss(x, w, b):
            y = jconv.conv2d(x, w, b, layout="NHWC", method="pallas", **kwargs)
            return jnp.sum(y.astype(jnp.float32) ** 2)

        return jax.value_and_grad(loss, argnums=(0, 1, 2))(x, w, b)

    text = _cuda_module(step, x, w, b)
    # the forward pass, the input gradient (one call per stride phase) and the kernel gradient
    expected = 2 + (4 if kwargs.get("stride", 1) == 2 else 1)
    assert text.count("__gpu$xla.gpu.triton") == expected
    assert "jconv_conv_y" in text and "jconv_conv_x" in text and "jconv_conv_w" in text


KERNEL_GRADIENT_VARIANTS = {  # bench shapes at their GPU batch sizes
    "depthwise-all-taps": (
        ConvGeometry(64, 56, 56, 128, 128, 3, 3, 128, (1, 1), (1, 1), ((1, 1), (1, 1))),
        BlockConfig(16, 64, 16, 4, 2, split_k=58, flat=True),
    ),
    "depthwise-serial": (
        ConvGeometry(64, 56, 56, 128, 128, 3, 3, 128, (1, 1), (1, 1), ((1, 1), (1, 1))),
        BlockConfig(64, 128, 64, 4, 2, split_k=58, serial=True),
    ),
    "resnet14-serial": (
        ConvGeometry(64, 14, 14, 256, 256, 3, 3, 1, (1, 1), (1, 1), ((1, 1), (1, 1))),
        BlockConfig(128, 128, 64, 8, 3, split_k=8, serial=True),
    ),
    "resnet14-serial-tap-groups": (
        ConvGeometry(64, 14, 14, 256, 256, 3, 3, 1, (1, 1), (1, 1), ((1, 1), (1, 1))),
        BlockConfig(64, 128, 64, 8, 3, split_k=11, serial=True, tap_group=3),
    ),
    "resnet56-tap-groups": (
        ConvGeometry(64, 56, 56, 64, 64, 3, 3, 1, (1, 1), (1, 1), ((1, 1), (1, 1))),
        BlockConfig(64, 64, 64, 4, 3, split_k=88, tap_group=3),
    ),
}


@pytest.mark.filterwarnings("ignore:The Pallas Triton backend is deprecated")  # jax >= 0.11
@pytest.mark.parametrize(
    "config",
    [BlockConfig(64, 64, 16, 8, 2, rows=14), BlockConfig(128, 64, 16, 4, 2, flat=True)],
    ids=["rolling-rows", "unrolled-taps"],
)
def test_depthwise_variants_lower_for_cuda(config):
    """The row-rolling depthwise kernels (tuples of pending rows, of rows of dy and of
    accumulators in the loop), and the unrolled taps (with every tap in one program for
    the kernel gradient), lower to one Triton kernel each for CUDA at the bench's
    depthwise shape: the forward pass with its bias and both gradients."""
    g = ConvGeometry(64, 56, 56, 128, 128, 3, 3, 128, (1, 1), (1, 1), ((1, 1), (1, 1)))

    def products(x, w, b, dy):
        kw = dict(config=config, out_dtype=jnp.bfloat16)
        return (
            _pallas_triton.forward(x, w, b, g, **kw),
            _pallas_triton.input_grad(dy, w, g, **kw),
            _pallas_triton.kernel_grad(x, dy, g, **kw),
        )

    shapes = (g.x_shape(), g.w_shape(), (g.o,), g.y_shape())
    text = _cuda_module(products, *(jax.ShapeDtypeStruct(a, jnp.bfloat16) for a in shapes))
    assert text.count("__gpu$xla.gpu.triton") == 3
    assert "jconv_conv_y" in text and "jconv_conv_x" in text and "jconv_conv_w" in text


@pytest.mark.filterwarnings("ignore:The Pallas Triton backend is deprecated")  # jax >= 0.11
@pytest.mark.parametrize("name", KERNEL_GRADIENT_VARIANTS)
def test_kernel_gradient_variants_lower_for_cuda(name):
    """The all-taps depthwise kernel gradient (a tuple of accumulators in the loop) and the
    serial splits (a spin on an atomic counter, a barrier) lower to one Triton kernel each
    for CUDA, at the bench's shapes."""
    g, config = KERNEL_GRADIENT_VARIANTS[name]

    def dw(x, dy):
        return _pallas_triton.kernel_grad(x, dy, g, config=config, out_dtype=jnp.bfloat16)

    shapes = (g.x_shape(), g.y_shape())
    text = _cuda_module(dw, *(jax.ShapeDtypeStruct(a, jnp.bfloat16) for a in shapes))
    assert text.count("__gpu$xla.gpu.triton") == 1 and "jconv_conv_w" in text
