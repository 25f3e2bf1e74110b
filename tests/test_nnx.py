"""jconv.nnx.Conv against flax.nnx.Conv: same parameters, outputs, gradients, states and errors.

Every configuration builds both modules from the same Rngs seed, checks that the
parameters are identical, then compares outputs and gradients (precision
'highest' on both): jconv.nnx.Conv is a drop-in replacement for Flax's.

Run time: on CPU, compiling JAX's (partitionable threefry) random number
generator costs seconds per new shape, far more than any convolution here.
So the kernels come in a few shapes (KERNEL_SHAPES, shared with test_linen.py)
and are initialized eagerly, where JAX caches the generator per shape; inputs
are drawn with NumPy; and each configuration compiles once, one nnx.jit for
both modules.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import AxisType, NamedSharding, PartitionSpec

import jconv
from tests._cpu import cpu_mesh, needs_8_cpu_devices
from tests._helpers import assert_trees_close, assert_trees_equal, error_of, products, random_array

OUT = 8  # output features everywhere: divisible by every group count and by the 8 devices
# (kernel_size, input features per group): with OUT, the few kernel shapes all tests use.
KERNEL_SHAPES = [((3, 3), 2), ((2, 3), 1), ((3,), 2)]
METHODS = [m for m in jconv.METHODS if m != "pallas"]  # 'pallas': see test_pallas.py
# Padding forms Flax accepts, for a 2-D and a 1-D kernel (negative amounts crop).
PADDINGS_2D = [
    "SAME",
    "VALID",
    "CIRCULAR",
    "REFLECT",
    ((-1, 1), (2, -1)),
    1,
    (2, 0),
    ((1, 2), (0, 1)),
    (1, (0, 2)),
    "same_lower",  # test_linen.py has it
]
PADDINGS_1D = ["CAUSAL", ((-1, 2),), "REFLECT", ((0, 3),), "SAME"]
# Config index -> (param_dtype, dtype, preferred_element_type), for a few 2-D configs.
REDUCED_DTYPES = {
    1: (jnp.float32, jnp.float16, None),
    4: (jnp.bfloat16, None, None),
    9: (jnp.bfloat16, jnp.bfloat16, jnp.float32),
}


@dataclasses.dataclass(frozen=True)
class Config:
    kernel_size: tuple[int, ...]
    in_features: int
    batch: tuple[int, ...]
    spatial: tuple[int, ...]
    method: str
    kwargs: dict[str, Any]

    def __str__(self) -> str:
        kw = ",".join(
            k if k == "mask" else f"{k}={getattr(v, '__name__', v)}" for k, v in self.kwargs.items()
        )
        return f"k{self.kernel_size}-b{self.batch}-s{self.spatial}-{self.method}-{kw}"


def random_config(i: int) -> Config:
    """Configuration i: padding forms and methods in turn, the rest drawn at random."""
    rng = np.random.default_rng(1000 + i)
    rank = 1 if i % 3 == 2 else 2
    if rank == 1:
        padding = PADDINGS_1D[i // 3 % len(PADDINGS_1D)]
        kernel_size, per_group = KERNEL_SHAPES[2]
    else:
        padding = PADDINGS_2D[(i - i // 3) % len(PADDINGS_2D)]
        kernel_size, per_group = KERNEL_SHAPES[int(rng.integers(2))]
    param_dtype, dtype, preferred = REDUCED_DTYPES.get(i, (jnp.float32, None, None))
    if param_dtype != jnp.float32:  # one bfloat16 kernel shape, shared with test_linen.py
        kernel_size, per_group = KERNEL_SHAPES[0]
    strides = tuple(int(s) for s in rng.integers(1, 3, rank))
    dilation = tuple(int(d) for d in rng.integers(1, 3, rank))
    groups = int(rng.choice([1, 2, 4]))
    window = [(k - 1) * d + 1 for k, d in zip(kernel_size, dilation, strict=True)]
    spatial = tuple(int(w + rng.integers(1, 4)) for w in window)
    kwargs: dict[str, Any] = dict(
        strides=strides if rng.random() < 0.7 else strides[0],
        padding=padding,
        kernel_dilation=dilation if rng.random() < 0.7 else dilation[0],
        feature_group_count=groups,
        use_bias=bool(rng.random() < 0.7),
        param_dtype=param_dtype,
    )
    if dtype is not None:
        kwargs["dtype"] = dtype
    if preferred is not None:
        kwargs["preferred_element_type"] = preferred
    if rng.random() < 0.3:
        kwargs["mask"] = jnp.asarray(rng.random((*kernel_size, per_group, OUT)) < 0.7, jnp.float32)
    batch = [(), (2,), (2, 1)][int(rng.integers(3))]
    method = METHODS[i % len(METHODS)]
    return Config(kernel_size, per_group * groups, batch, spatial, method, kwargs)


CONFIGS = [random_config(i) for i in range(13)]
GRAD_CONFIGS = {1, 2, 3, 10}  # gradients too: jconv's own methods, 1-D, f16, a mask


def build(conv_cls: type, config: Config, seed: int = 0) -> nnx.Module:
    """Flax's Conv (conv_cls=nnx.Conv) or jconv's for a config, from a seed."""
    kw = dict(config.kwargs, precision="highest")
    if conv_cls is jconv.nnx.Conv:
        kw["method"] = config.method
    return conv_cls(config.in_features, OUT, config.kernel_size, rngs=nnx.Rngs(seed), **kw)


def random_input(config: Config, seed: int = 1) -> jax.Array:
    return random_array((*config.batch, *config.spatial, config.in_features), seed)


def tolerance(config: Config) -> float:
    dtypes = {config.kwargs["param_dtype"], config.kwargs.get("dtype", jnp.float32)}
    if jnp.bfloat16 in dtypes:
        return 3e-2
    if jnp.float16 in dtypes:
        return 3e-3
    return 1e-5


def assert_params_equal(ref: Any, mine: Any) -> None:
    """Identical Params: same tree, names, shapes, dtypes and bits (modules or states)."""
    if isinstance(ref, nnx.Module):
        ref, mine = nnx.state(ref, nnx.Param), nnx.state(mine, nnx.Param)
    assert_trees_equal(ref, mine)


def loss_and_output(model: nnx.Module, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """<model(x), r> for a fixed, varied r, and model(x)."""
    y = model(x)
    r = jnp.sin(0.7 * jnp.arange(y.size, dtype=jnp.float32) + 0.3).reshape(y.shape)
    return jnp.sum(y.astype(jnp.float32) * r), y


@nnx.jit(static_argnames="with_grads")
def outputs(models: tuple[nnx.Module, ...], x: jax.Array, with_grads: bool) -> list[Any]:
    """For each model, y = model(x) and, with_grads, the gradients of <y, r> with respect
    to its Params and to x: nnx.jit and nnx.grad over both modules, one compile."""
    if not with_grads:
        return [(model(x), None) for model in models]
    grad_fn = nnx.grad(loss_and_output, argnums=(0, 1), has_aux=True)
    return [grad_fn(model, x)[::-1] for model in models]


@pytest.mark.parametrize(
    "i",
    range(len(CONFIGS)),
    ids=[f"{'grads-' * (i in GRAD_CONFIGS)}{c}" for i, c in enumerate(CONFIGS)],
)
def test_same_params_outputs_and_grads(i: int):
    config = CONFIGS[i]
    ref, mine = build(nnx.Conv, config), build(jconv.nnx.Conv, config)
    assert_params_equal(ref, mine)
    (y_ref, grads_ref), (y, grads) = outputs((ref, mine), random_input(config), i in GRAD_CONFIGS)
    assert y.shape == y_ref.shape and y.dtype == y_ref.dtype
    assert_trees_close(y, y_ref, tolerance(config))
    assert_trees_close(grads, grads_ref, tolerance(config))


def test_eager_call_and_state_swap():
    """Eagerly, as most code runs: same outputs; and a Flax state (a checkpoint) loads into
    jconv's Conv and back, mask included."""
    mask = jnp.tril(jnp.ones((3, 3, 2, OUT)))
    kw = dict(strides=2, padding="CIRCULAR", precision="highest", mask=mask)
    ref = nnx.Conv(2, OUT, (3, 3), rngs=nnx.Rngs(5), **kw)
    mine = jconv.nnx.Conv(2, OUT, (3, 3), rngs=nnx.Rngs(5), **kw)
    assert_params_equal(ref, mine)
    x = random_array((2, 9, 8, 2))
    assert_trees_close(mine(x), ref(x))

    other = jconv.nnx.Conv(2, OUT, (3, 3), rngs=nnx.Rngs(6), **kw)
    assert jax.tree.structure(nnx.state(other)) == jax.tree.structure(nnx.state(ref))
    assert not np.allclose(other(x), ref(x))  # another seed, other parameters
    nnx.update(other, nnx.state(ref))  # Flax -> jconv
    assert_params_equal(ref, other)
    assert_trees_close(other(x), ref(x))

    nnx.update(mine, jax.tree.map(lambda v: -v, nnx.state(mine, nnx.Param)))
    nnx.update(ref, nnx.state(mine))  # jconv -> Flax
    assert_params_equal(mine, ref)
    assert_trees_close(ref(x), mine(x))


def test_metadata_initializers_attributes_and_unbatched_1d():
    kw = dict(
        strides=None,
        input_dilation=None,
        kernel_dilation=None,
        precision="highest",  # a GPU's default rounds float32 operands to TF32
        kernel_init=nnx.initializers.he_normal(),
        bias_init=nnx.initializers.constant(0.25),
        kernel_metadata={"tag": "k"},
        bias_metadata={"tag": "b"},
    )
    ref = nnx.Conv(2, OUT, 3, rngs=nnx.Rngs(params=4), **kw)
    mine = jconv.nnx.Conv(2, OUT, 3, rngs=nnx.Rngs(params=4), **kw)
    assert_params_equal(ref, mine)
    assert mine.kernel.get_metadata()["tag"] == "k" and mine.bias.get_metadata()["tag"] == "b"
    for name in ("kernel_shape", "kernel_size", "strides", "padding", "in_features", "use_bias"):
        assert getattr(mine, name) == getattr(ref, name)
    assert mine.kernel_shape == (3, 2, OUT)
    x = random_array((7, 2))  # (L, C): no batch axis
    assert_trees_close(mine(x), ref(x))


def test_vmap_over_params_and_over_inputs():
    """nnx.vmap applies a stack of Convs (an ensemble) to one input, and one Conv to a batch of
    unbatched inputs, under nnx.jit: as Flax's Conv does."""
    models = []
    for conv_cls, kw in ((nnx.Conv, {}), (jconv.nnx.Conv, {"method": "taps"})):
        conv = conv_cls(
            1, OUT, (2, 3), padding="REFLECT", precision="highest", rngs=nnx.Rngs(0), **kw
        )
        graphdef, state = nnx.split(conv)
        stacked = jax.tree.map(lambda v: jnp.stack([v, -2 * v, v + 0.5]), state)
        models.append((nnx.merge(graphdef, stacked), conv))

    @nnx.jit
    def run(models: Any, x: jax.Array) -> Any:
        return [
            (
                nnx.vmap(lambda m, x: m(x), in_axes=(0, None))(ensemble, x),
                nnx.vmap(lambda m, x: m(x), in_axes=(None, 0))(single, x),
            )
            for ensemble, single in models
        ]

    x = random_array((2, 6, 5, 1))
    ys_ref, ys = run(models, x)
    assert ys[0].shape == (3, 2, 6, 5, OUT)
    assert_trees_close(ys, ys_ref)


def test_empty_output_like_lax():
    """A window wider than the padded input gives an empty output in Flax; likewise here."""
    x = random_array((2, 2, 5, 2))
    y_ref, y = (
        conv_cls(2, OUT, (3, 3), padding="VALID", rngs=nnx.Rngs(0))(x)
        for conv_cls in (nnx.Conv, jconv.nnx.Conv)
    )
    assert y.shape == y_ref.shape == (2, 0, 3, OUT) and y.dtype == y_ref.dtype


X = np.random.default_rng(0).normal(size=(2, 6, 6, 2)).astype(np.float32)
X6 = np.random.default_rng(0).normal(size=(2, 6, 6, 6)).astype(np.float32)
# Bad arguments: (constructor keyword arguments, call input). Flax writes the messages of
# the first group itself, so they must match word for word; the rest come from lax.
FLAX_MESSAGES = [
    (dict(padding="CAUSAL"), X),
    (dict(padding=[[1, 1], [1, 1]]), X),
    (dict(padding=(1, 2, 3)), X),
    (dict(padding=np.int64(1)), X),
    (dict(mask=jnp.ones((3, 3, 2, 5))), X),
]
SAME_TYPE = [
    (dict(padding="FOO"), X),
    (dict(padding="circular"), X),
    (dict(padding=((1.5, 1), (1, 1))), X),
    (dict(strides=(1, 1, 1)), X),
    (dict(strides=0), X),
    (dict(kernel_dilation=0), X),
    (dict(), X[..., :1]),  # channel mismatch
    (dict(), X[0, 0]),  # too few dimensions
    (dict(in_features=6, feature_group_count=3), X6),  # 3 groups do not divide 8 outputs
    (dict(feature_group_count=0), X),
    (dict(kernel_size=None), X),
    (dict(dtype=jnp.int32), X),
    (dict(precision="fastest-ish"), X),
    (dict(preferred_element_type=jnp.int32), X),
    (dict(preferred_element_type=jnp.bfloat16), X),
]


def _errors(kwargs: dict[str, Any], x: Any) -> tuple[Any, Any]:
    kw = dict(dict(in_features=2, out_features=OUT, kernel_size=(3, 3)), **kwargs)
    return (
        error_of(lambda: nnx.Conv(**kw, rngs=nnx.Rngs(0))(x)),
        error_of(lambda: jconv.nnx.Conv(**kw, rngs=nnx.Rngs(0))(x)),
    )


@pytest.mark.parametrize("kwargs,x", FLAX_MESSAGES, ids=lambda v: str(v)[:40])
def test_errors_with_flax_messages(kwargs, x):
    ref, mine = _errors(kwargs, x)
    assert ref is not None and mine == ref


@pytest.mark.parametrize("kwargs,x", SAME_TYPE, ids=lambda v: str(v)[:40])
def test_errors_of_same_type(kwargs, x):
    ref, mine = _errors(kwargs, x)
    assert ref is not None and mine is not None and mine[0] is ref[0], (ref, mine)


# Where Flax takes a bool as the int 1, jconv refuses it, naming the argument (jconv._checks'
# rule, the one conv2d applies): (keyword arguments, exception type, what the message names).
BOOLS_REFUSED = [
    (dict(strides=True), TypeError, "strides"),
    (dict(kernel_dilation=(1, True)), TypeError, "kernel_dilation"),
    (dict(padding=True), ValueError, "padding"),
    (dict(padding=((True, 0), (0, 1))), ValueError, "padding"),
    (dict(feature_group_count=True), TypeError, "groups"),
]


@pytest.mark.parametrize("kwargs,error,name", BOOLS_REFUSED, ids=lambda v: str(v)[:30])
def test_bools_refused_where_flax_takes_them_as_one(kwargs, error, name):
    ref, mine = _errors(kwargs, X)
    assert ref is None  # Flax runs it
    assert mine is not None and mine[0] is error and name in mine[1], mine


def test_preferred_element_type_as_wide_as_the_inputs():
    """bfloat16 inputs with a float16 preferred_element_type: lax allows it (same width), and
    so does jconv (the rule of conv2d, in jconv._checks); the outputs agree with Flax's."""
    kw = dict(dtype=jnp.bfloat16, preferred_element_type=jnp.float16, precision="highest")
    x = random_array((2, 6, 5, 2))
    y_ref, y = (
        conv_cls(2, OUT, (3, 3), rngs=nnx.Rngs(0), **kw)(x)
        for conv_cls in (nnx.Conv, jconv.nnx.Conv)
    )
    assert y.dtype == y_ref.dtype
    assert_trees_close(y, y_ref, 3e-2)


def test_errors_raised_at_construction():
    """What jconv cannot run, or what could never run, is refused before any key is drawn."""
    rngs = nnx.Rngs(0)
    cases = [
        (NotImplementedError, "1-D and 2-D", dict(kernel_size=(3, 3, 3))),
        (NotImplementedError, "1-D and 2-D", dict(kernel_size=())),
        (TypeError, "input_dilation must be an int", dict(input_dilation=True)),
        (ValueError, "method must be one of", dict(method="fft")),
        (ValueError, "divisible by feature_group_count", dict(feature_group_count=3)),
    ]
    for error, match, kwargs in cases:
        kw = dict(dict(in_features=4, out_features=OUT, kernel_size=(3, 3)), **kwargs)
        with pytest.raises(error, match=match):
            jconv.nnx.Conv(**kw, rngs=rngs)
    assert rngs.params.count[...] == 0


@pytest.mark.parametrize("kernel_size", [(3, 3), (3,)], ids=["2d", "1d"])
@needs_8_cpu_devices
@pytest.mark.usefixtures("on_cpu")
def test_kernel_sharded_on_output_features(kernel_size: tuple[int, ...]):
    """with_partitioning on the output-feature axis: jit with the NamedShardings that
    nnx.get_partition_spec gives on a Mesh of 8 devices puts 1/8 of the kernel's output
    features on each device, for Flax's Conv and jconv's alike; the outputs agree."""
    mesh = cpu_mesh((8,), ("model",), axis_types=(AxisType.Auto,))
    names = (*([None] * len(kernel_size)), None, "model")
    # eager_sharding=False: created on one device, placed by jit below
    init = nnx.with_partitioning(nnx.initializers.lecun_normal(), names, eager_sharding=False)
    models = tuple(
        conv_cls(2, OUT, kernel_size, kernel_init=init, precision="highest", rngs=nnx.Rngs(0))
        for conv_cls in (nnx.Conv, jconv.nnx.Conv)
    )
    state = nnx.state(models)
    shardings = jax.tree.map(
        lambda spec: NamedSharding(mesh, spec),
        nnx.get_partition_spec(state),
        is_leaf=lambda v: isinstance(v, PartitionSpec),
    )
    nnx.update(models, jax.jit(lambda s: s, out_shardings=shardings)(state))
    x = random_array((2, *((6, 5) if len(kernel_size) == 2 else (7,)), 2))
    with jax.set_mesh(mesh):
        y_ref, y = nnx.jit(lambda models, x: [m(x) for m in models])(models, x)
    expected = NamedSharding(mesh, PartitionSpec(*names))
    for model in models:
        kernel = model.kernel[...]
        assert kernel.sharding.is_equivalent_to(expected, kernel.ndim)
        assert kernel.addressable_data(0).shape == (*kernel_size, 2, OUT // 8)
    assert_params_equal(*models)
    assert_trees_close(y, y_ref)
    # The same split is jconv.sharding.sharded_conv2d's 'out_channels' strategy:
    if len(kernel_size) == 2:
        mine = models[1]
        placed = jconv.sharding.shard_inputs(
            x, mine.kernel[...], mesh=mesh, strategy="out_channels", layout="NHWC"
        )
        assert placed[1].sharding.is_equivalent_to(mine.kernel[...].sharding, 4)
        y_sharded = jconv.sharding.sharded_conv2d(
            x,
            mine.kernel[...],
            mine.bias[...],
            mesh=mesh,
            strategy="out_channels",
            layout="NHWC",
            padding="SAME",
            precision="highest",
        )
        assert_trees_close(y_sharded, y)


@needs_8_cpu_devices
@pytest.mark.usefixtures("on_cpu")
def test_out_sharding_in_explicit_mode():
    """nnx.Conv's out_sharding (explicit sharding mode): the result lands sharded as asked."""
    mesh = cpu_mesh((8,), ("d",), axis_types=(AxisType.Explicit,))
    ref, mine = (
        conv_cls(2, OUT, (3, 3), rngs=nnx.Rngs(0)) for conv_cls in (nnx.Conv, jconv.nnx.Conv)
    )
    with jax.set_mesh(mesh):
        x = jax.device_put(random_array((8, 6, 5, 2)), PartitionSpec("d"))
        for spec in (PartitionSpec("d", None, None, None), PartitionSpec(None, None, None, "d")):
            y_ref, y = ref(x, out_sharding=spec), mine(x, out_sharding=spec)
            assert y.sharding.spec == y_ref.sharding.spec == spec
            assert_trees_close(y, y_ref, 1e-4)


@needs_8_cpu_devices
@pytest.mark.usefixtures("on_cpu")
@pytest.mark.parametrize("kernel_size", [(3, 3), (3,)])
def test_kernel_split_on_output_features_in_explicit_mode(kernel_size):
    """Tensor parallelism as in Flax: the kernel and bias split along the output features on
    an explicit mesh, out_sharding naming where the result goes; 2-D and 1-D kernels, the
    result and the kernel's gradient as nnx.Conv's."""
    mesh = cpu_mesh((2, 4), ("b", "o"), axis_types=(AxisType.Explicit,) * 2)
    ref, mine = (
        conv_cls(2, OUT, kernel_size, rngs=nnx.Rngs(3)) for conv_cls in (nnx.Conv, jconv.nnx.Conv)
    )
    rank = len(kernel_size)
    out = PartitionSpec("b", *(None,) * rank, "o")
    with jax.set_mesh(mesh):
        x = jax.device_put(random_array((4, *(6,) * rank, 2)), PartitionSpec("b"))
        for module in (ref, mine):
            kernel = jax.device_put(module.kernel[...], PartitionSpec(*(None,) * (rank + 1), "o"))
            module.kernel.set_value(kernel)
            module.bias.set_value(jax.device_put(module.bias[...], PartitionSpec("o")))

        def loss(module, x):
            return jnp.sum(module(x, out_sharding=out) ** 2)

        (y_ref, y) = (jax.jit(lambda m, x: m(x, out_sharding=out))(m, x) for m in (ref, mine))
        g_ref, g = (nnx.grad(loss)(m, x) for m in (ref, mine))
    assert y.sharding.spec == y_ref.sharding.spec
    assert_trees_close(y, y_ref, 1e-4)
    assert g.kernel[...].sharding.spec == g_ref.kernel[...].sharding.spec
    assert_trees_close(g.kernel[...], g_ref.kernel[...], 1e-4)


# Input dilation, as Flax's own nnx/linen equivalence tests use it: explicit padding, groups,
# a mask, a float16 kernel; preferred_element_type as nnx's argument and as linen's partial.
@pytest.mark.parametrize("strides", [None, (2, 3)])
@pytest.mark.parametrize("preferred", [None, jnp.float32])
def test_input_dilation_like_flax(strides, preferred):
    kw = dict(
        strides=strides,
        padding=(4, 2),
        input_dilation=(2, 3),
        kernel_dilation=(2, 1),
        feature_group_count=2,
        mask=jnp.tril(jnp.ones((2, 3, 1, OUT))),
        dtype=jnp.float32,
        param_dtype=jnp.float16,
        precision="highest",
        preferred_element_type=preferred,
    )
    ref, mine = (
        conv_cls(2, OUT, (2, 3), rngs=nnx.Rngs(42), **kw) for conv_cls in (nnx.Conv, jconv.nnx.Conv)
    )
    assert_params_equal(ref, mine)
    x = random_array((3, 9, 7, 2))
    (y_ref, grads_ref), (y, grads) = outputs((ref, mine), x, True)
    assert_trees_close(y, y_ref)
    assert_trees_close(grads, grads_ref, 3e-3)  # float16 kernel gradients
    del kw["preferred_element_type"]
    partial = functools.partial(jax.lax.conv_general_dilated, preferred_element_type=preferred)
    linen = jconv.linen.Conv(OUT, (2, 3), conv_general_dilated=partial, **kw)
    y_linen = linen.apply({"params": {"kernel": mine.kernel[...], "bias": mine.bias[...]}}, x)
    np.testing.assert_array_equal(y_linen, mine(x))  # bit for bit, as Flax's test asks


def test_input_dilation_refuses_string_padding_as_flax_does():
    ref, mine = _errors(dict(padding="SAME", input_dilation=2), X)
    assert ref is not None and mine is not None and mine[0] is ref[0] is ValueError


def test_custom_conv_general_dilated():
    """A partial of lax's with preferred_element_type still runs jconv (no lax convolution in
    the program with method='taps'); any other callable is called as Flax calls it."""
    x = random_array((2, 6, 5, 2))
    partial = functools.partial(jax.lax.conv_general_dilated, preferred_element_type=jnp.float32)
    mine = jconv.nnx.Conv(
        2, OUT, (3, 3), conv_general_dilated=partial, method="taps", rngs=nnx.Rngs(0)
    )
    assert {eqn.primitive.name for eqn in products(lambda x: mine(x), x)} == {"dot_general"}
    calls = []

    def counting(*args: Any, **kwargs: Any) -> jax.Array:
        calls.append(sorted(kwargs))
        return jax.lax.conv_general_dilated(*args, **kwargs)

    kw = dict(padding="CIRCULAR", strides=2, conv_general_dilated=counting, precision="highest")
    ref, custom = (
        conv_cls(2, OUT, (3, 3), rngs=nnx.Rngs(0), **kw) for conv_cls in (nnx.Conv, jconv.nnx.Conv)
    )
    assert_trees_close(custom(x), ref(x))
    assert calls[0] == calls[1] and "out_sharding" in calls[0] and "lhs_dilation" in calls[0]


# ConvTranspose: (kernel_size, in_features, out_features, constructor kwargs, input shape).
# The kernels take the shapes of KERNEL_SHAPES (with transpose_kernel, (..., out, in)).
TRANSPOSE_CONFIGS = [
    ((3, 3), 2, OUT, dict(strides=2, padding="SAME"), (2, 5, 4, 2)),
    (
        (2, 3),
        1,
        OUT,
        dict(strides=(2, 3), padding="CIRCULAR", kernel_dilation=(1, 2), mask=True),
        (3, 4, 1),
    ),
    ((3, 3), 2, OUT, dict(padding=((1, -1), (2, 0)), use_bias=False), (2, 1, 5, 4, 2)),
    ((3, 3), OUT, 2, dict(strides=(1, 2), padding="VALID", transpose_kernel=True), (2, 4, 3, 8)),
    ((3, 3), OUT, 2, dict(strides=2, padding="CIRCULAR", transpose_kernel=True), (1, 3, 4, 8)),
    ((3,), 2, OUT, dict(strides=2, padding="VALID", dtype=jnp.bfloat16), (2, 6, 2)),
]
TRANSPOSE_METHODS = ["auto", "taps", "xla", "vmap", "banded", "im2col"]


@pytest.mark.parametrize("i", range(len(TRANSPOSE_CONFIGS)))
def test_conv_transpose_same_params_outputs_and_grads(i: int):
    kernel_size, cin, cout, kw, x_shape = TRANSPOSE_CONFIGS[i]
    kw = dict(kw, precision="highest")
    if kw.pop("mask", False):
        shape = (*kernel_size, cin, cout)
        kw["mask"] = jnp.asarray(np.random.default_rng(i).random(shape) < 0.7, jnp.float32)
    ref = nnx.ConvTranspose(cin, cout, kernel_size, rngs=nnx.Rngs(i), **kw)
    mine = jconv.nnx.ConvTranspose(
        cin, cout, kernel_size, rngs=nnx.Rngs(i), method=TRANSPOSE_METHODS[i], **kw
    )
    assert_params_equal(ref, mine)
    assert mine.kernel_shape == ref.kernel_shape
    (y_ref, grads_ref), (y, grads) = outputs((ref, mine), random_array(x_shape), i in (1, 2))
    assert y.shape == y_ref.shape and y.dtype == y_ref.dtype
    tol = 3e-2 if "dtype" in kw else 1e-5
    assert_trees_close(y, y_ref, tol)
    assert_trees_close(grads, grads_ref, tol)


def test_conv_transpose_errors():
    with pytest.raises(NotImplementedError, match="1-D and 2-D"):
        jconv.nnx.ConvTranspose(2, OUT, (3, 3, 3), rngs=nnx.Rngs(0))
    for kw in (dict(padding="REFLECT", strides=2), dict(mask=jnp.ones((3, 3, 1, OUT)))):
        ref, mine = (
            error_of(lambda c=c, kw=kw: c(2, OUT, (3, 3), rngs=nnx.Rngs(0), **kw)(X))
            for c in (nnx.ConvTranspose, jconv.nnx.ConvTranspose)
        )
        assert ref is not None and mine is not None and mine[0] is ref[0], (ref, mine)
