"""jconv.linen.Conv against flax.linen.Conv: same variables, outputs, gradients and errors.

Every configuration initializes both modules with the same PRNG key, checks that
the variables are identical, then compares outputs and gradients through
linen's init/apply (precision 'highest' on both): jconv.linen.Conv is a drop-in
replacement for Flax's. As in test_nnx.py (see its docstring for why), kernels
come in a few shapes, initialized eagerly, inputs are drawn with NumPy, and
each configuration compiles once.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec

import jconv
from tests._cpu import cpu_mesh, needs_8_cpu_devices
from tests._helpers import assert_trees_close, assert_trees_equal, error_of, random_array

OUT = 8  # features everywhere: divisible by every group count and by the 8 devices
KERNEL_SHAPES = [((3, 3), 2), ((2, 3), 1), ((3,), 2)]  # (kernel_size, inputs per group)
PADDINGS = {  # Flax's padding forms, by rank (test_nnx.py has every one; negative ones crop)
    2: ["CIRCULAR", 2, "same_lower", "VALID", ((0, -1), (1, 0)), (0, (1, 2)), "REFLECT"],
    1: ["CAUSAL", ((1, 0),)],
}
METHODS = [m for m in jconv.METHODS if m != "pallas"]  # 'pallas': see test_pallas.py


def rank_of(i: int) -> int:
    return 1 if i % 3 == 1 and i % 4 != 3 else 2


def config(i: int) -> tuple[dict[str, Any], tuple[int, ...], str]:
    """Configuration i: (module keyword arguments, input shape, method), drawn at random."""
    rng = np.random.default_rng(2000 + i)
    rank = rank_of(i)
    kernel_size, per_group = KERNEL_SHAPES[2] if rank == 1 else KERNEL_SHAPES[int(rng.integers(2))]
    if i % 4 == 3:  # bfloat16: one kernel shape, shared with test_nnx.py
        kernel_size, per_group = KERNEL_SHAPES[0]
    paddings = PADDINGS[rank]
    padding = paddings[sum(rank_of(j) == rank for j in range(i)) % len(paddings)]
    strides = tuple(int(s) for s in rng.integers(1, 3, rank))
    dilation = tuple(int(d) for d in rng.integers(1, 3, rank))
    groups = int(rng.choice([1, 2, 4]))
    window = [(k - 1) * d + 1 for k, d in zip(kernel_size, dilation, strict=True)]
    spatial = tuple(int(w + rng.integers(1, 4)) for w in window)
    kwargs: dict[str, Any] = dict(
        features=OUT,
        kernel_size=kernel_size if rank == 2 or rng.random() < 0.5 else kernel_size[0],
        strides=strides,
        padding=padding,
        kernel_dilation=dilation,
        feature_group_count=groups,
        use_bias=bool(rng.random() < 0.7),
        precision="highest",
    )
    if i % 4 == 3:
        kwargs.update(param_dtype=jnp.bfloat16, dtype=jnp.bfloat16)
    if rng.random() < 0.3:
        shape = (*kernel_size, per_group, OUT)
        kwargs["mask"] = jnp.asarray(rng.random(shape) < 0.7, jnp.float32)
    batch = [(), (2,), (1, 2)][i % 3]
    return kwargs, (*batch, *spatial, per_group * groups), METHODS[i % len(METHODS)]


CONFIGS = [config(i) for i in range(8)]
GRAD_CONFIGS = {0, 1, 3}  # 1-D and 2-D, bf16, masks


def config_id(i: int) -> str:
    kwargs, shape, method = CONFIGS[i]
    kw = ",".join(
        k if k == "mask" else f"{k}={getattr(v, '__name__', v)}"
        for k, v in kwargs.items()
        if k not in ("features", "precision")
    )
    return f"{'grads-' * (i in GRAD_CONFIGS)}x{shape}-{method}-{kw}"


def loss_and_output(module: nn.Module, variables: Any, x: jax.Array) -> tuple[jax.Array, Any]:
    """<y, r> for y = module.apply(variables, x) and a fixed, varied r; and y."""
    y = module.apply(variables, x)
    r = jnp.sin(0.7 * jnp.arange(y.size, dtype=jnp.float32) + 0.3).reshape(y.shape)
    return jnp.sum(y.astype(jnp.float32) * r), y


@pytest.mark.parametrize("i", range(len(CONFIGS)), ids=config_id)
def test_same_variables_outputs_and_grads(i: int):
    kwargs, shape, method = CONFIGS[i]
    ref, mine = nn.Conv(**kwargs), jconv.linen.Conv(**kwargs, method=method)
    x = random_array(shape)
    key = jax.random.key(i)
    variables_ref = ref.init(key, x)
    variables = mine.init(key, x)
    assert_trees_equal(variables_ref, variables)
    assert set(variables["params"]) == ({"kernel", "bias"} if kwargs["use_bias"] else {"kernel"})

    @jax.jit
    def run(variables_ref: Any, variables: Any, x: jax.Array) -> Any:
        if i not in GRAD_CONFIGS:
            return [(m.apply(v, x), None) for m, v in ((ref, variables_ref), (mine, variables))]
        grad_fn = jax.grad(loss_and_output, argnums=(1, 2), has_aux=True)
        return [grad_fn(m, v, x)[::-1] for m, v in ((ref, variables_ref), (mine, variables))]

    (y_ref, grads_ref), (y, grads) = run(variables_ref, variables, x)
    assert y.shape == y_ref.shape and y.dtype == y_ref.dtype
    tol = 3e-2 if "dtype" in kwargs else 1e-5
    assert_trees_close(y, y_ref, tol)
    assert_trees_close(grads, grads_ref, tol)


class Net(nn.Module):
    """A model written against a Conv class: swapping the class keeps every parameter path."""

    conv: type
    kw: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kw = dict(self.kw or {}, precision="highest")
        x = nn.relu(self.conv(OUT, (3, 3), strides=2, padding="REFLECT", **kw)(x))
        x = self.conv(OUT, (3,), padding="CAUSAL", **kw)(x.reshape(x.shape[0], -1, OUT)[..., :2])
        return jnp.mean(x, axis=1)


def test_model_swap_same_init_and_checkpoints_both_ways():
    """A model using Flax's Conv and the same model using jconv's: same variables from one
    key (paths 'Conv_0', 'Conv_1'), same outputs; each loads the other's variables."""
    ref, mine = Net(nn.Conv), Net(jconv.linen.Conv, {"method": "im2col"})
    x = random_array((2, 7, 6, 2))
    y_ref, variables_ref = ref.init_with_output(jax.random.key(0), x)
    y, variables = mine.init_with_output(jax.random.key(0), x)
    assert set(variables["params"]) == {"Conv_0", "Conv_1"}
    assert_trees_equal(variables_ref, variables)
    assert_trees_close(y, y_ref)

    other = ref.init(jax.random.key(1), x)
    assert_trees_close(mine.apply(other, x), ref.apply(other, x))  # Flax's checkpoint -> jconv
    scaled = jax.tree.map(lambda v: 1.5 * v + 0.1, variables)
    assert_trees_close(ref.apply(scaled, x), mine.apply(scaled, x))  # and back


def test_vmap_over_inputs_and_attributes():
    """jax.vmap of apply over unbatched inputs; Flax's attributes and defaults."""
    kw = dict(features=OUT, kernel_size=(2, 3), padding=1, precision="highest")
    ref, mine = nn.Conv(**kw), jconv.linen.Conv(**kw, method="taps")
    x = random_array((3, 5, 4, 1))  # three unbatched (H, W, C) inputs
    variables = ref.init(jax.random.key(0), x[0])
    assert_trees_equal(variables, mine.init(jax.random.key(0), x[0]))
    y_ref, y = (jax.vmap(lambda x, m=m: m.apply(variables, x))(x) for m in (ref, mine))
    assert_trees_close(y, y_ref)

    ref, mine = nn.Conv(OUT, 3), jconv.linen.Conv(OUT, 3)  # positional, as Flax allows
    for name in ("strides", "padding", "input_dilation", "kernel_dilation", "use_bias", "dtype"):
        assert getattr(mine, name) == getattr(ref, name)
    assert mine.param_dtype == ref.param_dtype and mine.shared_weights and mine.method == "auto"


X = np.random.default_rng(0).normal(size=(2, 6, 6, 2)).astype(np.float32)
# Bad arguments: (keyword arguments, input). Flax writes the messages of the first group
# itself, so they must match word for word; the rest come from lax.
FLAX_MESSAGES = [
    (dict(padding="CAUSAL"), X),
    (dict(padding=[(1, 1)]), X),
    (dict(padding=((1, 1), (1, 2, 3))), X),
    (dict(mask=jnp.ones((3, 3, 2, 5))), X),
]
SAME_TYPE = [
    (dict(padding="REFLECTED"), X),
    (dict(strides=(1, 2, 1)), X),
    (dict(kernel_dilation=0), X),
    (dict(feature_group_count=3), np.concatenate([X] * 3, axis=-1)),  # 3 groups, 8 features
    (dict(feature_group_count=0), X),
    (dict(dtype=jnp.int32), X),
    (dict(), X[0, 0]),  # too few dimensions
]


def _errors(kwargs: dict[str, Any], x: Any) -> tuple[Any, Any]:
    kw = dict(dict(features=OUT, kernel_size=(3, 3)), **kwargs)
    return (
        error_of(lambda: nn.Conv(**kw).init(jax.random.key(0), x)),
        error_of(lambda: jconv.linen.Conv(**kw).init(jax.random.key(0), x)),
    )


@pytest.mark.parametrize("kwargs,x", FLAX_MESSAGES, ids=lambda v: str(v)[:40])
def test_errors_with_flax_messages(kwargs, x):
    ref, mine = _errors(kwargs, x)
    assert ref is not None and mine == ref


@pytest.mark.parametrize("kwargs,x", SAME_TYPE, ids=lambda v: str(v)[:40])
def test_errors_of_same_type(kwargs, x):
    ref, mine = _errors(kwargs, x)
    assert ref is not None and mine is not None and mine[0] is ref[0], (ref, mine)


@pytest.mark.parametrize(
    "kwargs,error,name",
    [
        (dict(strides=(True, 1)), TypeError, "strides"),
        (dict(padding=((0, 1), (True, 0))), ValueError, "padding"),
    ],
    ids=["strides", "padding"],
)
def test_bools_refused_where_flax_takes_them_as_one(kwargs, error, name):
    """Flax takes True as the int 1; jconv refuses it, naming the argument (test_nnx.py has
    every such argument)."""
    ref, mine = _errors(kwargs, X)
    assert ref is None
    assert mine is not None and mine[0] is error and name in mine[1], mine


def test_errors_raised_at_construction():
    """What jconv cannot run is refused when the module is constructed."""
    cases = [
        (NotImplementedError, "1-D and 2-D", dict(kernel_size=(3, 3, 3))),
        (TypeError, "input_dilation must be an int", dict(input_dilation=(2, True))),
        (ValueError, "method must be one of", dict(method="fft")),
    ]
    for error, match, kwargs in cases:
        kw = dict(dict(features=OUT, kernel_size=(3, 3)), **kwargs)
        with pytest.raises(error, match=match):
            jconv.linen.Conv(**kw)
    with pytest.raises(ValueError, match="divisible by feature_group_count"):  # Flax asserts
        jconv.linen.Conv(OUT, (3, 3), feature_group_count=4).init(jax.random.key(0), X)


@needs_8_cpu_devices
@pytest.mark.usefixtures("on_cpu")
def test_kernel_sharded_on_output_features():
    """linen's with_partitioning on the output-feature axis: jit(init) with the
    NamedShardings from nn.get_partition_spec on a Mesh of 8 devices puts 1/8 of the
    kernel's features on each device, for Flax's Conv and jconv's alike; outputs agree."""
    mesh = cpu_mesh((8,), ("model",), axis_types=(AxisType.Auto,))
    names = (None, None, None, "model")
    init = nn.with_partitioning(nn.initializers.lecun_normal(), names)
    modules = (
        nn.Conv(OUT, (3, 3), kernel_init=init, precision="highest"),
        jconv.linen.Conv(OUT, (3, 3), kernel_init=init, precision="highest"),
    )
    x = random_array((2, 6, 5, 2))

    def init_both(key: jax.Array, x: jax.Array) -> tuple[Any, Any]:
        return tuple(m.init(key, x) for m in modules)

    abstract = jax.eval_shape(init_both, jax.random.key(0), x)
    shardings = nn.get_sharding(abstract, mesh)
    variables = jax.jit(init_both, out_shardings=shardings)(jax.random.key(0), x)
    expected = NamedSharding(mesh, PartitionSpec(*names))
    for v in variables:
        kernel = v["params"]["kernel"].unbox()
        assert kernel.sharding.is_equivalent_to(expected, kernel.ndim)
        assert kernel.addressable_data(0).shape == (3, 3, 2, OUT // 8)
    assert_trees_equal(*variables)
    with jax.set_mesh(mesh):
        y_ref, y = jax.jit(lambda vs, x: [m.apply(v, x) for m, v in zip(modules, vs)])(variables, x)
    assert_trees_close(y, y_ref)


def test_conv_transpose_same_variables_and_outputs():
    """linen.ConvTranspose: the same variables from the same key, and the same outputs, for
    lax's 'SAME', 'CIRCULAR' with transpose_kernel, explicit crops, and a 1-D kernel."""
    cases = [
        (dict(kernel_size=(3, 3), strides=(2, 2)), (2, 5, 4, 2)),
        (dict(kernel_size=(3, 3), strides=(2, 1), padding="CIRCULAR", transpose_kernel=True),
         (2, 4, 3, OUT)),
        (dict(kernel_size=(2, 3), padding=((2, -1), (0, 1)), kernel_dilation=(2, 1)), (3, 4, 1)),
        (dict(kernel_size=(3,), strides=(3,), padding="VALID", use_bias=False), (2, 5, 2)),
    ]  # fmt: skip
    for kwargs, x_shape in cases:
        features = 2 if kwargs.get("transpose_kernel") else OUT  # kernels of KERNEL_SHAPES
        x = random_array(x_shape)
        ref = nn.ConvTranspose(features, precision="highest", **kwargs)
        mine = jconv.linen.ConvTranspose(features, precision="highest", method="taps", **kwargs)
        variables = ref.init(jax.random.key(0), x)
        assert_trees_equal(variables, mine.init(jax.random.key(0), x))
        assert_trees_close(mine.apply(variables, x), ref.apply(variables, x))


def test_conv_general_dilated_cls_called_as_flax_calls_it():
    """A conv_general_dilated_cls instance that is not lax's function runs as given."""

    class Doubled:
        def __call__(self, *args: Any, **kwargs: Any) -> jax.Array:
            return 2.0 * jax.lax.conv_general_dilated(*args, **kwargs)

    x = random_array((2, 6, 5, 2))
    kw = dict(conv_general_dilated_cls=Doubled, padding="REFLECT", precision="highest")
    ref, mine = nn.Conv(OUT, (3, 3), **kw), jconv.linen.Conv(OUT, (3, 3), **kw)
    variables = ref.init(jax.random.key(0), x)
    assert_trees_close(mine.apply(variables, x), ref.apply(variables, x))
