"""jconv.conv2d, every method, against lax.conv_general_dilated (HIGHEST) and a NumPy loop.

The matrices below declare products of methods and configurations and run a
deterministic sample of each (tests/_helpers.py; `pytest --full-product` runs them
whole). 'auto' runs one of the other methods (tests/test_auto.py checks which, bit
for bit): it is left out of the per-method matrices. Every case runs its method's
own code: 'winograd' only meets the shapes it does not hand to 'taps', and the
tests assert which lowering ran.
"""

from __future__ import annotations

import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jconv
from jconv._checks import check_conv_args
from jconv._method_winograd import winograd_supported
from tests._cpu import CPU_DEVICES, cpu_mesh, needs_8_cpu_devices
from tests._helpers import assert_runs_own_code, sample_product
from tests.reference import assert_close, conv_lax, conv_numpy, explicit_pads, to_nhwc

# 'pallas' runs its GPU kernels in Pallas's interpret mode here, a second or more per
# compile: test_pallas.py checks it on a selection of these cases instead.
METHODS = [m for m in jconv.METHODS if m != "pallas"]
LOWERINGS = [m for m in METHODS if m != "auto"]  # the methods that are one lowering
JCONV_METHODS = [m for m in LOWERINGS if m != "xla"]  # jconv's own

# (x shape NCHW, out channels, (kh, kw), conv2d keyword arguments)
CONFIGS = [
    ((2, 3, 7, 8), 4, (3, 3), {}),
    ((2, 3, 9, 9), 5, (3, 2), {"stride": 2}),
    ((1, 4, 8, 7), 2, (2, 3), {"stride": (1, 3), "padding": "SAME"}),
    ((2, 2, 9, 8), 3, (3, 3), {"stride": 2, "padding": "SAME"}),
    ((2, 2, 8, 9), 3, (4, 2), {"stride": (2, 3), "padding": "SAME_LOWER"}),
    ((1, 3, 6, 6), 2, (3, 3), {"padding": 2}),
    ((2, 3, 6, 7), 4, (3, 3), {"padding": (1, 2)}),
    ((1, 2, 6, 5), 3, (2, 3), {"padding": ((0, 2), (3, 1))}),
    ((2, 3, 9, 10), 2, (3, 3), {"dilation": 2}),
    ((1, 2, 10, 9), 3, (2, 3), {"dilation": (3, 1), "stride": 2, "padding": "SAME"}),
    ((2, 4, 7, 7), 6, (3, 3), {"groups": 2}),
    ((2, 6, 8, 6), 6, (3, 3), {"groups": 6, "padding": 1}),  # depthwise
    ((1, 4, 6, 6), 8, (3, 3), {"groups": 4, "stride": 2}),  # depthwise, multiplier 2
    ((2, 5, 6, 6), 3, (1, 1), {}),  # 1x1
    ((1, 3, 7, 7), 2, (1, 1), {"stride": 2, "padding": 1}),
    ((2, 3, 6, 7), 4, (3, 3), {"padding": 1, "padding_mode": "circular"}),
    ((1, 2, 7, 6), 3, (3, 2), {"padding": ((2, 1), (0, 1)), "padding_mode": "reflect"}),
    ((2, 2, 6, 6), 3, (3, 3), {"padding": (2, 1), "padding_mode": "replicate", "stride": 2}),
    (
        (1, 4, 7, 7),
        4,
        (3, 3),
        {"padding": 3, "padding_mode": "circular", "dilation": 2, "groups": 2},
    ),
    ((3, 7, 6), 4, (2, 2), {"padding": 1}),  # unbatched
    ((2, 3, 5, 5), 2, (5, 5), {}),  # kernel as large as the input: a 1x1 output
]
IDS = [f"{c[0]}-{c[1]}-{c[2]}-" + ",".join(f"{k}={v}" for k, v in c[3].items()) for c in CONFIGS]


def make(config, dtype=np.float32, seed=0, layout="NCHW"):
    """Fresh random x, kernel and bias for a config, in the layout's orders (NumPy)."""
    x_shape, o, (kh, kw), kwargs = config
    c = x_shape[-3]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape, np.float32).astype(dtype)
    w = rng.standard_normal((o, c // kwargs.get("groups", 1), kh, kw), np.float32).astype(dtype)
    b = rng.standard_normal((o,), np.float32).astype(dtype)
    if layout == "NHWC":
        x, w = to_nhwc(x, w)
    return x, w, b


def spec_of(config):
    x_shape, o, (kh, kw), kwargs = config
    k_shape = (o, x_shape[-3] // kwargs.get("groups", 1), kh, kw)
    return check_conv_args(x_shape, k_shape, x_dtype="float32", **kwargs)


def own_code(method, *values):
    """Whether method runs its own code on the config (the last of the case's values):
    'winograd' hands strides, dilations, groups and 1x1 kernels to 'taps' (tested there)."""
    config = values[-1]
    return method != "winograd" or winograd_supported(spec_of(config))


def config_id(value):
    return IDS[CONFIGS.index(value)] if value in CONFIGS else getattr(value, "__name__", str(value))


def reference(x, w, b, layout, **kwargs):
    y = conv_lax(x.astype(jnp.float32), w.astype(jnp.float32), layout=layout, **kwargs)
    channel_axis = 1 if layout == "NCHW" else 3
    if x.ndim == 3:
        channel_axis -= 1
    return y + jnp.expand_dims(
        b.astype(jnp.float32), [a for a in range(y.ndim) if a != channel_axis]
    )


@sample_product(
    "method,layout,config", LOWERINGS, ["NCHW", "NHWC"], CONFIGS, per=6, keep=own_code,
    ids=config_id,
)  # fmt: skip
def test_forward_matches_lax(method, layout, config):
    x, w, b = make(config, layout=layout)
    kwargs = config[3]
    conv = lambda x, w, b: jconv.conv2d(
        x, w, b, layout=layout, method=method, precision="highest", **kwargs
    )
    y = conv(x, w, b)
    expected = reference(x, w, b, layout, **kwargs)
    assert y.shape == expected.shape
    assert y.dtype == jnp.float32
    assert_close(y, expected)
    assert_runs_own_code(method, conv, x, w, b)


@pytest.mark.parametrize("config", [CONFIGS[0], CONFIGS[11], CONFIGS[13]], ids=["3x3", "dw", "1x1"])
@pytest.mark.parametrize("method", METHODS)
def test_highest_reaches_every_product(method, config):
    """precision='highest' reaches every matrix product, forward and backward.

    On a GPU a float32 product at the default precision rounds its operands to
    TF32 (10 bits of mantissa), which no CPU does: one product that drops the
    precision passes every numerical test here and fails there. 'auto' holds
    every platform's lowering (a lax.platform_dependent), so the program is
    lowered for the CPU and CUDA at once, and all are checked.
    """
    x, w, _ = make(config, seed=17)
    conv = lambda x, w: jconv.conv2d(x, w, method=method, precision="highest", **config[3])
    grads = jax.grad(lambda x, w: jnp.sum(conv(x, w) ** 2), argnums=(0, 1))
    for fn in (conv, grads):
        # the program as lowered: 'banded' and 'winograd' form their products there
        lowered = jax.jit(fn).trace(x, w).lower(lowering_platforms=("cpu", "cuda"))
        found = [
            line
            for line in lowered.as_text().splitlines()
            if re.search(r"stablehlo\.(dot_general|convolution)\b", line)
        ]
        # 'vmap' multiplies elementwise, and so does 'taps' (and 'winograd', which hands
        # it the shape) with one input channel per group
        depthwise = config[3].get("groups", 1) == config[0][1]
        assert found or method == "vmap" or (depthwise and method in ("taps", "winograd"))
        for line in found:
            assert line.count("HIGHEST") == 2, (method, line)


NUMPY_CASES = [
    ((2, 3, 5, 6), 2, (2, 3), dict(stride=(2, 1), dilation=(1, 2), pads=((1, 0), (2, 1)))),
    ((1, 4, 6, 6), 4, (3, 3), dict(groups=2, pads=((1, 1), (1, 1)), padding_mode="reflect")),
    ((1, 3, 5, 5), 3, (3, 3), dict(groups=3, pads=((2, 2), (1, 1)), padding_mode="circular")),
    ((2, 2, 4, 5), 3, (2, 2), dict(stride=2, pads=((1, 2), (0, 1)), padding_mode="replicate")),
    ((1, 3, 6, 7), 2, (3, 3), dict(pads=((2, 1), (0, 1)), padding_mode="reflect")),
    ((2, 2, 7, 6), 3, (5, 4), dict(pads=((2, 2), (1, 3)))),
]


def numpy_case_runs_own_code(method, case):
    x_shape, o, (kh, kw), np_kwargs = case
    g = np_kwargs.get("groups", 1)
    spec = check_conv_args(
        x_shape,
        (o, x_shape[1] // g, kh, kw),
        stride=np_kwargs.get("stride", 1),
        dilation=np_kwargs.get("dilation", 1),
        padding=np_kwargs["pads"],
        groups=g,
    )
    return method != "winograd" or winograd_supported(spec)


@sample_product(
    "method,case", LOWERINGS, NUMPY_CASES, per=2, keep=numpy_case_runs_own_code,
    ids=lambda v: str(NUMPY_CASES.index(v)) if v in NUMPY_CASES else v,
)  # fmt: skip
def test_matches_numpy_loop(method, case):
    """jconv (every method, 'xla' included) against the independent NumPy loop."""
    x_shape, o, (kh, kw), np_kwargs = case
    rng = np.random.default_rng(1)
    groups = np_kwargs.get("groups", 1)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal((o, x_shape[1] // groups, kh, kw)).astype(np.float32)
    stride = np_kwargs.get("stride", 1)
    stride = (stride, stride) if isinstance(stride, int) else stride
    expected = conv_numpy(x, w, **{**np_kwargs, "stride": stride})

    def conv(x, w):
        return jconv.conv2d(
            x,
            w,
            stride=stride,
            dilation=np_kwargs.get("dilation", 1),
            padding=np_kwargs["pads"],
            groups=groups,
            padding_mode=np_kwargs.get("padding_mode", "zeros"),
            precision="highest",
            method=method,
        )

    assert_close(conv(x, w), expected)
    assert_runs_own_code(method, conv, x, w)


# configs with a stride, groups (depthwise), a reflected border, and one 'winograd' runs
DTYPE_CONFIGS = [CONFIGS[3], CONFIGS[11], CONFIGS[16], CONFIGS[0]]
DTYPES = [jnp.bfloat16, jnp.float16, jnp.float32]


@sample_product(
    "method,dtype,config", LOWERINGS, DTYPES, DTYPE_CONFIGS, per=1, by=2, keep=own_code,
    ids=config_id,
)  # fmt: skip
def test_dtypes(method, dtype, config):
    """Each method in each dtype."""
    x, w, b = make(config, dtype, seed=2)
    # 'highest': a GPU's default precision rounds float32 operands to TF32
    conv = lambda x, w, b: jconv.conv2d(x, w, b, method=method, precision="highest", **config[3])
    y = conv(x, w, b)
    assert y.dtype == dtype
    assert_close(y, reference(x, w, b, "NCHW", **config[3]), dtype)
    assert_runs_own_code(method, conv, x, w, b)


@sample_product(
    "method,config", LOWERINGS, [CONFIGS[3], CONFIGS[6]], per=1, keep=own_code, ids=config_id
)
def test_float64(method, config):
    with jax.enable_x64(True):
        x, w, b = make(config, np.float64, seed=3)
        conv = lambda x, w, b: jconv.conv2d(x, w, b, method=method, **config[3])
        y = conv(x, w, b)
        assert y.dtype == jnp.float64
        spec = spec_of(config)
        expected = conv_numpy(x, w, stride=spec.stride, pads=spec.pads) + b[:, None, None]
        assert_close(y, expected, jnp.float64)
        assert_runs_own_code(method, conv, x, w, b)


@sample_product(
    "method,config", LOWERINGS, [CONFIGS[1], CONFIGS[0]], per=1, keep=own_code, ids=config_id
)
def test_preferred_element_type(method, config):
    x, w, _ = make(config, jnp.bfloat16, seed=4)
    kwargs = config[3]
    conv = lambda x, w: jconv.conv2d(
        x, w, method=method, preferred_element_type=jnp.float32, **kwargs
    )
    y = conv(x, w)
    assert y.dtype == jnp.float32
    expected = conv_lax(x, w, preferred_element_type=jnp.float32, **kwargs)
    assert_close(y, expected, jnp.float32, scale=10.0)
    assert_runs_own_code(method, conv, x, w)


@pytest.mark.parametrize("method", LOWERINGS)
def test_mixed_dtypes_promote(method):
    x, w, _ = make(CONFIGS[0], seed=5)
    y = jconv.conv2d(x.astype(jnp.bfloat16), w, method=method, precision="highest")
    assert y.dtype == jnp.float32
    assert_close(y, conv_lax(x.astype(jnp.bfloat16).astype(jnp.float32), w))


@pytest.mark.parametrize(
    "x_dtype,bias_dtype,pet",
    [
        (jnp.float16, jnp.float32, None),
        (jnp.bfloat16, jnp.float32, None),
        (jnp.float16, jnp.bfloat16, None),
        (jnp.float32, jnp.float16, None),
        (jnp.float16, jnp.float32, jnp.float32),
    ],
)
def test_bias_promotes_like_lax_plus(x_dtype, bias_dtype, pet):
    """The bias is added as ``lax.conv(x, kernel) + bias`` adds it: promoted, never cast down."""
    x, w, b = make(CONFIGS[0], seed=17)
    x, w, b = x.astype(x_dtype), w.astype(x_dtype), b.astype(bias_dtype)
    y = jconv.conv2d(x, w, b, preferred_element_type=pet)
    expected = conv_lax(x, w, preferred_element_type=pet) + b[:, None, None]
    assert y.dtype == expected.dtype
    assert_close(y, expected, x_dtype)


def test_bias_promotes_in_a_fused_epilogue_too():
    """'pallas' adds a bias in its kernel; a wider one is added after it, promoting y."""
    x, w, b = make(CONFIGS[0], seed=19)
    x16, w16 = x.astype(jnp.float16), w.astype(jnp.float16)
    y = jconv.conv2d(x16, w16, b, method="pallas")
    expected = conv_lax(x16, w16) + b[:, None, None]
    assert y.dtype == expected.dtype == jnp.float32
    assert_close(y, expected, jnp.float16)


def test_bias_promotion_is_refused_under_strict_promotion():
    x, w, b = make(CONFIGS[0], seed=18)
    with (
        jax.numpy_dtype_promotion("strict"),
        pytest.raises(TypeError, match="bias has dtype float32 but .* float16.*cast the bias"),
    ):
        jconv.conv2d(x.astype(jnp.float16), w.astype(jnp.float16), b)


GRAD_CONFIGS = [CONFIGS[i] for i in (3, 7, 9, 11, 13, 16, 18, 19)]


@sample_product("method,config", JCONV_METHODS, GRAD_CONFIGS, per=4, keep=own_code, ids=config_id)
def test_gradients_match_lax(method, config):
    layout = "NHWC" if CONFIGS.index(config) % 2 else "NCHW"
    x, w, b = make(config, seed=6, layout=layout)
    kwargs = config[3]
    y_shape = jax.eval_shape(lambda: reference(x, w, b, layout, **kwargs)).shape
    cotangent = np.random.default_rng(7).standard_normal(y_shape, np.float32)

    def grads(fn):
        loss = lambda x, w, b: jnp.sum(fn(x, w, b) * cotangent)
        return jax.grad(loss, argnums=(0, 1, 2))

    mine = grads(
        lambda *a: jconv.conv2d(*a, layout=layout, method=method, precision="highest", **kwargs)
    )
    lax_grads = grads(lambda *a: reference(*a, layout, **kwargs))
    got, expected = jax.jit(lambda *a: (mine(*a), lax_grads(*a)))(x, w, b)  # one program
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        assert_close(g, e)
    assert_runs_own_code(method, mine, x, w, b)


# (conv2d keyword arguments): a stride with a reflected border, and what 'winograd' runs
CHECK_GRADS_KWARGS = [
    dict(stride=(2, 1), padding=((1, 0), (1, 2)), padding_mode="reflect"),
    dict(padding=((1, 0), (1, 2)), padding_mode="reflect"),
]


@sample_product(
    "method,kwargs", JCONV_METHODS, CHECK_GRADS_KWARGS, per=1,
    keep=lambda m, kw: m != "winograd" or "stride" not in kw,
    ids=lambda v: v if isinstance(v, str) else ("strided" if "stride" in v else "stride1"),
)  # fmt: skip
def test_check_grads(method, kwargs):
    """Numerical against automatic derivatives, forward and reverse (second order for 'taps')."""
    with jax.enable_x64(True):
        x, w, b = make(((1, 2, 5, 6), 2, (2, 3), {}), np.float64, seed=8)
        # jitted: check_grads traces it many times, and jit's transformations are cached
        conv = jax.jit(lambda x, w, b: jconv.conv2d(x, w, b, method=method, **kwargs))
        # On an H200 (jax 0.11.2) XLA aborts compiling taps' float64 second derivatives
        # (triton_tiling_propagation.cc: "Check failed: subdim_size_accumulator ==
        # dim_size"), killing the process: second order on CPUs only (README, Known issues)
        order = 2 if method == "taps" and jax.default_backend() == "cpu" else 1
        check_grads(conv, (x, w, b), order=order, modes=["fwd", "rev"])
        assert_runs_own_code(method, conv, x, w, b)


@pytest.mark.parametrize("method", LOWERINGS)
def test_vmap_of_unbatched_equals_batched(method):
    x, w, b = make(CONFIGS[6], seed=9)
    f = jax.jit(lambda x: jconv.conv2d(x, w, b, method=method, padding=(1, 2)))
    assert_close(jax.vmap(f)(x), f(x))
    assert_runs_own_code(method, jax.vmap(f), x)
    # vmap over the kernel too, x shared: one conv with twice the output channels
    ws = np.stack([w, -2.0 * w])
    yw = jax.vmap(lambda w: jconv.conv2d(x, w, method=method, padding=(1, 2)))(ws)
    assert_close(yw[1], -2.0 * yw[0])


@pytest.mark.parametrize("method", JCONV_METHODS)
def test_jit_of_grad_of_vmap(method):
    x, w, _ = make(CONFIGS[0], seed=10)

    def loss(w):
        conv = lambda xi: jconv.conv2d(xi, w, method=method, precision="highest")
        per_sample = jax.vmap(conv)(x)
        return jnp.mean(per_sample**2)

    got = jax.jit(jax.grad(loss))(w)
    expected = jax.grad(lambda w: jnp.mean(conv_lax(x, w) ** 2))(w)
    assert_close(got, expected)
    assert_runs_own_code(method, jax.grad(loss), w)


@pytest.mark.parametrize("method", LOWERINGS)
def test_nan_and_inf_propagate_like_lax(method):
    x, w, _ = make(CONFIGS[0], seed=11)
    x[0, 1, 2, 3], x[1, 0, 4, 4] = np.nan, np.inf
    y = jconv.conv2d(x, w, method=method)
    expected = conv_lax(x, w)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
    np.testing.assert_array_equal(np.isposinf(y), np.isposinf(expected))
    assert np.isnan(y).any()


def test_same_padding_splits_like_lax():
    """'SAME' at stride 2: the odd padded pixel goes after (bottom/right), as in lax."""
    x, w, _ = make(((1, 1, 6, 6), 1, (4, 4), {}), seed=12)
    for padding in ("SAME", "SAME_LOWER"):
        y = jconv.conv2d(x, w, stride=2, padding=padding, precision="highest")
        assert_close(y, jax.lax.conv_general_dilated(x, w, (2, 2), padding, precision="highest"))


@pytest.mark.parametrize("padding", [1, (1, 2), ((0, 2), (1, 1))])
def test_padding_forms_mean_explicit_amounts(padding):
    x, w, _ = make(CONFIGS[0], seed=14)
    assert_close(
        jconv.conv2d(x, w, padding=padding, precision="highest"),
        jconv.conv2d(x, w, padding=explicit_pads(padding), method="xla", precision="highest"),
    )


def test_circular_conv_commutes_with_roll():
    """Rolling the input of a stride-1 circular 'SAME' conv rolls its output."""
    x, w, _ = make(((1, 3, 8, 8), 2, (3, 3), {}), seed=15)
    kw = dict(padding="SAME", padding_mode="circular", precision="highest")
    conv = lambda x: jconv.conv2d(x, w, **kw)
    for shift in itertools.product([1, 3], [2, 5]):
        assert_close(conv(jnp.roll(x, shift, axis=(2, 3))), jnp.roll(conv(x), shift, axis=(2, 3)))


@sample_product(
    "method,config", METHODS, [CONFIGS[10], CONFIGS[0]], per=1, keep=own_code, ids=config_id
)
@needs_8_cpu_devices
@pytest.mark.usefixtures("on_cpu")
def test_inside_shard_map(method, config):
    """Every lowering traces inside a user's shard_map (carries typed as varying)."""
    from jax.sharding import PartitionSpec as P

    mesh = jax.sharding.Mesh(np.array(CPU_DEVICES[:2]), ("data",))
    x, w, _ = make(config, seed=16)
    kwargs = config[3]
    f = jax.shard_map(
        lambda x: jconv.conv2d(x, w, method=method, **kwargs),
        mesh=mesh,
        in_specs=P("data"),
        out_specs=P("data"),
    )
    assert_close(jax.jit(f)(x), conv_lax(x, w, **kwargs))
    if method != "auto":
        assert_runs_own_code(method, f, x)


@pytest.mark.parametrize("method", METHODS)
@needs_8_cpu_devices
@pytest.mark.usefixtures("on_cpu")
def test_explicit_sharding_mode(method):
    """A batch-sharded x under JAX's explicit sharding mode: the result stays batch-sharded.

    The lowerings' reshapes and the kernel gradient's contraction over the sharded
    batch must say where their results go; this catches any that do not.
    """
    from jax.sharding import AxisType, PartitionSpec

    mesh = cpu_mesh((8,), ("d",), axis_types=(AxisType.Explicit,))
    x, w, _ = make(((8, 3, 9, 10), 4, (3, 3), {}), seed=14, layout="NHWC")
    with jax.set_mesh(mesh):
        xs = jax.device_put(x, PartitionSpec("d"))

        def conv(x, w):
            return jconv.conv2d(x, w, padding="SAME", layout="NHWC", method=method)

        y = conv(xs, w)
        grad_w = jax.grad(lambda w: jnp.sum(conv(xs, w) ** 2))(w)
    assert y.sharding.spec == PartitionSpec("d", None, None, None)
    assert_close(y, conv_lax(x, w, padding="SAME", layout="NHWC"))
    expected = jax.grad(lambda w: jnp.sum(conv_lax(x, w, padding="SAME", layout="NHWC") ** 2))(w)
    assert_close(grad_w, expected)


@pytest.mark.parametrize("method", METHODS)
@needs_8_cpu_devices
@pytest.mark.usefixtures("on_cpu")
def test_explicit_sharding_kernel_split_on_output_channels(method):
    """Tensor parallelism under explicit sharding: x split along the batch, the kernel and
    bias along O, and out_sharding (as lax asks) saying where the result goes. y and both
    gradients against lax; the gradients sharded as their arguments."""
    from jax.sharding import AxisType, PartitionSpec

    mesh = cpu_mesh((2, 4), ("b", "o"), axis_types=(AxisType.Explicit,) * 2)
    x, w, b = make(((4, 3, 7, 6), 8, (3, 3), {}), seed=21, layout="NHWC")
    out = PartitionSpec("b", None, None, "o")
    with jax.set_mesh(mesh):
        xs = jax.device_put(x, PartitionSpec("b"))
        ws = jax.device_put(w, PartitionSpec(None, None, None, "o"))
        bs = jax.device_put(b, PartitionSpec("o"))

        def conv(x, w, b):
            return jconv.conv2d(
                x, w, b, padding="SAME", layout="NHWC", method=method, out_sharding=out
            )

        y = jax.jit(conv)(xs, ws, bs)
        grads = jax.jit(jax.grad(lambda *a: jnp.sum(conv(*a) ** 2), argnums=(0, 1, 2)))(xs, ws, bs)

    def spec(a):  # P('b') and P('b', None, None, None) say the same
        return tuple(a.sharding.spec) + (None,) * (a.ndim - len(a.sharding.spec))

    assert spec(y) == tuple(out)
    assert [spec(g) for g in grads] == [spec(a) for a in (xs, ws, bs)]

    def ref(x, w, b):
        return conv_lax(x, w, padding="SAME", layout="NHWC") + b

    assert_close(y, ref(x, w, b))
    expected = jax.grad(lambda *a: jnp.sum(ref(*a) ** 2), argnums=(0, 1, 2))(x, w, b)
    for got, want in zip(grads, expected):
        assert_close(got, want)


@needs_8_cpu_devices
@pytest.mark.usefixtures("on_cpu")
def test_explicit_sharding_split_kernel_needs_out_sharding():
    """As lax: a kernel split across devices and no out_sharding is refused, by name;
    out_sharding of the wrong kind too."""
    from jax.sharding import AxisType, PartitionSpec

    mesh = cpu_mesh((8,), ("o",), axis_types=(AxisType.Explicit,))
    x, w, _ = make(((2, 3, 5, 5), 8, (3, 3), {}), seed=22, layout="NHWC")
    with jax.set_mesh(mesh):
        ws = jax.device_put(w, PartitionSpec(None, None, None, "o"))
        with pytest.raises(ValueError, match=r"kernel as .*'o'.* give out_sharding"):
            jconv.conv2d(x, ws, layout="NHWC")
        with pytest.raises(ValueError, match="give out_sharding"):
            jconv.conv_transpose2d(x, ws, layout="NHWC", transpose_kernel=False)
    with pytest.raises(TypeError, match="out_sharding must be None, a PartitionSpec"):
        jconv.conv2d(x, w, layout="NHWC", out_sharding=("b", None))


# x split along other axes than its batch under explicit sharding: (name, mesh shape,
# mesh axis names, x's PartitionSpec (NHWC), out_sharding, conv2d keyword arguments).
P_ = jax.sharding.PartitionSpec
INPUT_SPLITS = [
    ("height", (8,), ("d",), P_(None, "d"), None, {"padding": "SAME"}),
    ("width, reflected border", (8,), ("d",), P_(None, None, "d"), None,
     {"padding": 1, "padding_mode": "reflect"}),
    ("batch and height", (2, 4), ("b", "s"), P_("b", "s"), None, {"padding": "SAME"}),
    ("height and width, stride 2", (2, 4), ("h", "w"), P_(None, "h", "w"), None,
     {"padding": "SAME", "stride": 2}),
    ("channels, out_sharding", (8,), ("d",), P_(None, None, None, "d"), P_(None, "d"),
     {"padding": "SAME"}),
]  # fmt: skip


@sample_product(
    "method,split", METHODS, INPUT_SPLITS, per=2, ids=lambda v: v if isinstance(v, str) else v[0]
)
@needs_8_cpu_devices
@pytest.mark.usefixtures("on_cpu")
def test_explicit_sharding_input_split(method, split):
    """x split along its height, width or channels under explicit sharding, as lax takes it:
    y and both gradients against lax (HIGHEST) on the whole arrays; y laid out as lax lays
    it (the spatial split kept, or out_sharding), and dx as x."""
    from jax.sharding import AxisType

    _, shape, names, x_split, out, kwargs = split
    mesh = cpu_mesh(shape, names, axis_types=(AxisType.Explicit,) * len(shape))
    x, w, _ = make(((2, 8, 8, 16), 4, (3, 3), kwargs), seed=24, layout="NHWC")
    ct = np.random.default_rng(25).standard_normal(conv_lax(x, w, layout="NHWC", **kwargs).shape)

    def conv(x, w):
        return jconv.conv2d(x, w, layout="NHWC", method=method, out_sharding=out, **kwargs)

    def loss(x, w):
        return jnp.sum(conv(x, w) * ct)

    with jax.set_mesh(mesh):
        # the kernel a NumPy array, on no mesh: jconv places it on x's (lax's own kernel
        # gradient, laid out as its argument, would find no mesh to lay out on)
        xs, ws = jax.device_put(x, x_split), jax.device_put(w, P_())
        y = jax.jit(conv)(xs, w)
        dx, dw = jax.jit(jax.grad(loss, argnums=(0, 1)))(xs, w)
        if kwargs.get("padding_mode", "zeros") == "zeros":  # what lax itself gives
            lax_y = jax.lax.conv_general_dilated(
                xs, ws, (kwargs.get("stride", 1),) * 2, kwargs["padding"],
                dimension_numbers=("NHWC", "HWIO", "NHWC"), out_sharding=out,
            )  # fmt: skip
            assert y.sharding.spec == lax_y.sharding.spec

    def full(spec):  # P('b') and P('b', None, None, None) say the same
        return tuple(spec) + (None,) * (4 - len(spec))

    expected_y = out if out is not None else P_(*full(x_split)[:3], None)
    assert full(y.sharding.spec) == full(expected_y)
    assert full(dx.sharding.spec) == full(x_split)
    assert_close(y, conv_lax(x, w, layout="NHWC", **kwargs))

    def ref_loss(x, w):
        return jnp.sum(conv_lax(x, w, layout="NHWC", **kwargs) * ct)

    for got, want in zip((dx, dw), jax.grad(ref_loss, argnums=(0, 1))(x, w)):
        assert_close(got, want)


@needs_8_cpu_devices
@pytest.mark.usefixtures("on_cpu")
def test_explicit_sharding_input_split_refused():
    """As lax refuses them, by name and before any lowering: x split along its channels
    without out_sharding, and a split height the result's height does not divide into."""
    from jax.sharding import AxisType, PartitionSpec

    mesh = cpu_mesh((8,), ("d",), axis_types=(AxisType.Explicit,))
    x, w, _ = make(((2, 8, 8, 16), 4, (3, 3), {}), seed=26, layout="NHWC")
    dims = ("NHWC", "HWIO", "NHWC")
    with jax.set_mesh(mesh):
        by_channel = jax.device_put(x, PartitionSpec(None, None, None, "d"))
        by_height = jax.device_put(x, PartitionSpec(None, "d"))
        with pytest.raises(Exception, match="out_sharding"):
            jax.lax.conv_general_dilated(by_channel, w, (1, 1), "SAME", dimension_numbers=dims)
        with pytest.raises(Exception, match="not divisible"):  # height 8 -> 6 on 8 devices
            jax.lax.conv_general_dilated(by_height, w, (1, 1), "VALID", dimension_numbers=dims)
        for method in ("auto", "taps", "xla"):
            with pytest.raises(ValueError, match=r"x is split along its channel axis \(3\) as"):
                jconv.conv2d(by_channel, w, padding="SAME", layout="NHWC", method=method)
            with pytest.raises(ValueError, match="result's height, 6, does not divide among the 8"):
                jconv.conv2d(by_height, w, layout="NHWC", method=method)


@needs_8_cpu_devices
@pytest.mark.usefixtures("on_cpu")
def test_explicit_sharding_transposed_input_split():
    """conv_transpose2d of an x split along its height: y (twice the height) split as x."""
    from jax.sharding import AxisType, PartitionSpec

    mesh = cpu_mesh((8,), ("d",), axis_types=(AxisType.Explicit,))
    rng = np.random.default_rng(27)
    x = rng.standard_normal((2, 4, 8, 5)).astype(np.float32)  # N, C, H, W
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)  # C, O, kh, kw
    kwargs = dict(stride=2, padding=1, output_padding=1)
    want = jconv.conv_transpose2d(x, w, method="xla", precision="highest", **kwargs)
    for method in ("auto", "taps"):
        with jax.set_mesh(mesh):
            xs = jax.device_put(x, PartitionSpec(None, None, "d"))
            y = jax.jit(lambda x, m=method: jconv.conv_transpose2d(x, w, method=m, **kwargs))(xs)
        assert y.shape == (2, 3, 16, 10)
        assert tuple(y.sharding.spec)[:3] == (None, None, "d")
        assert_close(y, want)


@needs_8_cpu_devices
@pytest.mark.usefixtures("on_cpu")
def test_explicit_sharding_transposed_kernel_split():
    """conv_transpose2d with its (torch-order) kernel split along O under explicit sharding."""
    from jax.sharding import AxisType, PartitionSpec

    mesh = cpu_mesh((8,), ("o",), axis_types=(AxisType.Explicit,))
    rng = np.random.default_rng(23)
    x = rng.standard_normal((2, 4, 5, 5)).astype(np.float32)
    w = rng.standard_normal((4, 8, 3, 3)).astype(np.float32)  # C, O, kh, kw
    out = PartitionSpec(None, "o", None, None)
    with jax.set_mesh(mesh):
        ws = jax.device_put(w, PartitionSpec(None, "o"))
        y = jax.jit(lambda w: jconv.conv_transpose2d(x, w, stride=2, out_sharding=out))(ws)
    assert y.sharding.spec == out
    assert_close(y, jconv.conv_transpose2d(x, w, stride=2, method="xla", precision="highest"))
