"""jconv's sharding: every strategy against the unsharded conv2d, values, blocks, gradients,
the collectives in the compiled program, and the refusals.

Runs on the 8 simulated CPU devices that conftest.py sets up (on a GPU machine too).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import jconv
from tests._cpu import CPU_DEVICES, SHARDING, cpu_mesh

pytestmark = SHARDING

HIGHEST = {"precision": "highest"}


def rand(key: int, shape: tuple[int, ...]) -> np.ndarray:
    """Fresh random normal values (never zeros); NumPy's, so that no new shape compiles."""
    return np.random.default_rng(key).standard_normal(shape, np.float32)


def make(x_nchw, o, k, *, layout="NCHW", groups=1, key=0):
    """x, kernel and bias in the layout's orders: NCHW/OIHW or NHWC/HWIO."""
    c = x_nchw[1]
    kh, kw = (k, k) if isinstance(k, int) else k
    x = rand(key, x_nchw)
    kernel = rand(key + 1, (o, c // groups, kh, kw))
    bias = rand(key + 2, (o,))
    if layout == "NHWC":
        x, kernel = x.transpose(0, 2, 3, 1), kernel.transpose(2, 3, 1, 0)
    return x, kernel, bias


def close(actual, expected, tol=2e-5):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale)


@functools.cache
def mesh1d(n: int = 8, name: str = "d") -> Mesh:
    return cpu_mesh((n,), (name,))


@functools.cache
def mesh2d() -> Mesh:
    return cpu_mesh((2, 4), ("a", "b"))


# -- sharded_conv2d: each strategy, both layouts ------------------------------------------

# strategy -> the block one device holds of a (8, 16, 16, 16) output on 8 devices (NCHW)
BLOCKS = {
    "batch": (1, 16, 16, 16),
    "out_channels": (8, 2, 16, 16),
    "in_channels": (8, 16, 16, 16),
    "spatial": (8, 16, 2, 16),
}


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("strategy", jconv.sharding.STRATEGIES)
def test_strategy_equals_conv2d(strategy, layout):
    x, kernel, bias = make((8, 16, 16, 16), 16, 3, layout=layout)
    kw = dict(padding="SAME", layout=layout, **HIGHEST)
    y = jconv.sharding.sharded_conv2d(x, kernel, bias, mesh=mesh1d(), strategy=strategy, **kw)
    close(y, jconv.conv2d(x, kernel, bias, **kw))
    block = BLOCKS[strategy]
    if layout == "NHWC":
        block = (block[0], block[2], block[3], block[1])
    assert y.addressable_data(0).shape == block
    assert len(y.sharding.device_set) == 8


def test_against_lax_and_auto_mesh():
    """An Auto-typed jax.sharding.Mesh works too; the reference is lax itself."""
    mesh = Mesh(np.array(CPU_DEVICES), ("d",))
    x, kernel, _ = make((2, 8, 16, 12), 8, (3, 2))
    y = jconv.sharding.sharded_conv2d(
        x, kernel, mesh=mesh, strategy="in_channels", stride=(1, 2), **HIGHEST
    )
    ref = jax.lax.conv_general_dilated(x, kernel, (1, 2), "VALID", precision="highest")
    close(y, ref)


# -- spatial: every stride, dilation, padding form and padding mode -------------------------

# (x NCHW, out channels, kernel, conv2d kwargs); split over 4 devices (blocks of 4 rows)
# unless noted. Several have an output height that 4 does not divide (padded and cut).
MODES = ["zeros", "circular", "reflect", "replicate"]
ALL = tuple(MODES)
# (x NCHW, out channels, kernel, conv2d kwargs, padding modes); split over 4 devices (blocks
# of 4 rows). Several have an output height that 4 does not divide (padded and cut). Every
# mode meets stride, dilation, asymmetric pads and a drift; string paddings use zeros.
SPATIAL = [
    ((2, 3, 16, 8), 4, 3, {"padding": "VALID"}, ("zeros",)),  # mh = 14: output cut
    ((2, 3, 16, 8), 4, 3, {"padding": "SAME"}, ("zeros",)),
    ((2, 3, 16, 8), 4, 4, {"padding": "SAME_LOWER", "stride": 2}, ("zeros",)),
    ((2, 3, 16, 8), 4, 3, {"padding": "SAME", "stride": 2, "dilation": 2}, ("zeros",)),
    # stride 3: each device's window starts 1 row further from its block (dynamic offsets)
    ((1, 2, 20, 9), 3, (5, 3), {"padding": 2, "stride": (3, 1)}, ("zeros", "circular", "reflect")),
    ((2, 3, 16, 8), 4, 3, {"padding": (1, 2), "dilation": (2, 1)}, ("replicate",)),
    ((2, 3, 16, 8), 4, (2, 3), {"padding": ((3, 0), (1, 2))}, ALL),  # asymmetric
    ((2, 3, 16, 8), 4, 3, {"padding": ((0, 3), (0, 0)), "stride": 2, "dilation": 2},
     ("reflect", "replicate")),
    ((2, 4, 16, 8), 4, 3, {"padding": 1, "groups": 2}, ("circular",)),
]  # fmt: skip


def _spatial_cases():
    for i, (x_shape, o, k, kw, modes) in enumerate(SPATIAL):
        for mode in modes:
            yield pytest.param(x_shape, o, k, {**kw, "padding_mode": mode}, id=f"{i}-{mode}")


@pytest.mark.parametrize("x_shape,o,k,kw", list(_spatial_cases()))
def test_spatial_every_padding(x_shape, o, k, kw):
    x, kernel, bias = make(x_shape, o, k, groups=kw.get("groups", 1))
    kw = {**kw, **HIGHEST, "method": "xla"}
    y = jconv.sharding.sharded_conv2d(x, kernel, bias, mesh=mesh1d(4), strategy="spatial", **kw)
    close(y, jconv.conv2d(x, kernel, bias, **kw))


@pytest.mark.parametrize(
    "layout,kw",
    [
        ("NCHW", {"padding": 1, "padding_mode": "reflect"}),
        ("NHWC", {"padding": ((2, 1), (1, 1)), "padding_mode": "circular", "stride": 2}),
        ("NCHW", {"padding": "VALID", "dilation": 2}),
        ("NHWC", {"padding": (1, 1), "padding_mode": "replicate"}),
    ],
)
def test_spatial_height_and_width(layout, kw):
    """Split both spatial axes on a 2 x 4 mesh: halos of rows, then of columns (corners too)."""
    x, kernel, bias = make((2, 3, 8, 16), 4, 3, layout=layout)
    kw = {**kw, "layout": layout, **HIGHEST, "method": "xla"}
    strategy = {"spatial": ("a", "b")}
    y = jconv.sharding.sharded_conv2d(x, kernel, bias, mesh=mesh2d(), strategy=strategy, **kw)
    close(y, jconv.conv2d(x, kernel, bias, **kw))


def test_spatial_circular_commutes_with_roll():
    """A circular convolution is shift-equivariant: rolling x by a block rolls y by a block."""
    x, kernel, _ = make((1, 2, 16, 8), 3, 3)
    f = functools.partial(
        jconv.sharding.sharded_conv2d,
        mesh=mesh1d(),
        strategy="spatial",
        padding=1,
        padding_mode="circular",
        method="xla",
        **HIGHEST,
    )
    y, y_rolled = f(x, kernel), f(np.roll(x, 5, axis=2), kernel)
    close(y_rolled, np.roll(np.asarray(y), 5, axis=2))


def test_spatial_unbatched_and_w_only():
    x, kernel, _ = make((1, 3, 6, 16), 2, 3)
    kw = dict(padding=1, padding_mode="reflect", **HIGHEST, method="xla")
    y = jconv.sharding.sharded_conv2d(
        x[0], kernel, mesh=mesh1d(4), strategy={"spatial": (None, "d")}, **kw
    )
    close(y, jconv.conv2d(x[0], kernel, **kw))


# -- combinations and groups -------------------------------------------------------------


@pytest.mark.parametrize(
    "strategy,layout",
    [
        ({"batch": "a", "out_channels": "b"}, "NCHW"),
        ({"batch": "a", "out_channels": "b"}, "NHWC"),
        ({"in_channels": "a", "out_channels": "b"}, "NCHW"),
        ({"batch": "b", "spatial": "a"}, "NHWC"),
        ({"spatial": "a", "in_channels": "b"}, "NCHW"),
    ],
)
def test_combined_strategies(strategy, layout):
    x, kernel, bias = make((4, 8, 8, 8), 8, 3, layout=layout)
    kw = dict(padding="SAME", layout=layout, **HIGHEST, method="xla")
    y = jconv.sharding.sharded_conv2d(x, kernel, bias, mesh=mesh2d(), strategy=strategy, **kw)
    close(y, jconv.conv2d(x, kernel, bias, **kw))
    if strategy == {"batch": "a", "out_channels": "b"}:
        nchw = (2, 2, 8, 8)
        block = nchw if layout == "NCHW" else (2, 8, 8, 2)
        assert y.addressable_data(0).shape == block


@pytest.mark.parametrize(
    "strategy,c,o,groups",
    [
        ("out_channels", 8, 8, 8),  # depthwise: each device a whole group of 1
        ("out_channels", 4, 16, 2),  # 8 filters a group: each device inside one group
        ("out_channels", 8, 16, 4),  # 4 filters a group: each device half a group
        ("batch", 8, 8, 4),
        ("spatial", 8, 8, 8),
    ],
)
def test_groups(strategy, c, o, groups):
    x, kernel, bias = make((8, c, 16, 8), o, 3, groups=groups)
    kw = dict(padding=1, groups=groups, **HIGHEST, method="xla")
    y = jconv.sharding.sharded_conv2d(x, kernel, bias, mesh=mesh1d(), strategy=strategy, **kw)
    close(y, jconv.conv2d(x, kernel, bias, **kw))


# -- the local blocks, inside a user's own shard_map ---------------------------------------


def test_blocks_in_users_shard_map():
    mesh = mesh1d()
    x, kernel, bias = make((8, 8, 16, 8), 16, 3)
    kw = dict(padding=1, **HIGHEST, method="xla")
    ref = jconv.conv2d(x, kernel, bias, **kw)

    def run(block, in_specs, out_spec):
        f = jax.shard_map(block, mesh=mesh, in_specs=in_specs, out_specs=out_spec)
        # shard_inputs lays the arrays out as the strategy splits them; on this Explicit mesh
        # shard_map checks that this is what in_specs says
        args = jconv.sharding.shard_inputs(x, kernel, bias, mesh=mesh, strategy=block.__name__)
        return jax.jit(f)(*args)

    def batch(x, k, b):
        # x: f32[N/8, C, H, W]
        assert x.shape == (1, 8, 16, 8)
        return jconv.sharding.conv2d_batch_block(x, k, b, axis_name="d", **kw)

    def out_channels(x, k, b):
        # k: f32[O/8, C, kh, kw]
        assert k.shape == (2, 8, 3, 3)
        return jconv.sharding.conv2d_out_channels_block(x, k, b, axis_name="d", **kw)

    def in_channels(x, k, b):
        # x: f32[N, C/8, H, W] -> psum_scatter -> f32[N, O/8, H, W]
        y = jconv.sharding.conv2d_in_channels_block(x, k, b, axis_name="d", scatter=True, **kw)
        assert y.shape == (8, 2, 16, 8)
        return y

    def spatial(x, k, b):
        # x: f32[N, C, H/8, W]
        assert x.shape == (8, 8, 2, 8)
        return jconv.sharding.conv2d_spatial_block(x, k, b, axis_name="d", **kw)

    close(run(batch, (P("d"), P(), P()), P("d")), ref)
    close(run(out_channels, (P(), P("d"), P("d")), P(None, "d")), ref)
    close(run(in_channels, (P(None, "d"), P(None, "d"), P()), P(None, "d")), ref)
    close(run(spatial, (P(None, None, "d"), P(), P()), P(None, None, "d")), ref)


# -- the two-convolution block --------------------------------------------------------------


def _pair_inputs():
    x = rand(0, (4, 6, 8, 8))
    k1, b1 = rand(1, (16, 6, 3, 3)), rand(2, (16,))
    k2, b2 = rand(3, (5, 16, 3, 3)), rand(4, (5,))
    return x, k1, k2, b1, b2


def _pair_ref(x, k1, k2, b1, b2, **kw):
    h = jax.nn.relu(jconv.conv2d(x, k1, b1, **kw))
    return jconv.conv2d(h, k2, b2, **kw)


def test_conv_pair_one_collective():
    x, k1, k2, b1, b2 = _pair_inputs()
    kw = dict(padding="SAME", **HIGHEST, method="xla")

    def pair(x, k1, k2, b1, b2):
        return jconv.sharding.sharded_conv_pair(
            x, k1, k2, b1, b2, mesh=mesh1d(), activation=jax.nn.relu, **kw
        )

    close(pair(x, k1, k2, b1, b2), _pair_ref(x, k1, k2, b1, b2, **kw))
    hlo = jax.jit(pair).lower(x, k1, k2, b1, b2).compile().as_text()
    assert jconv.sharding.count_collectives(hlo) == {"all-reduce": 1}
    (c,) = jconv.sharding.collectives_in_hlo(hlo)
    assert c.nbytes == 4 * 5 * 8 * 8 * 4  # the output, once

    def user(x, k1, k2, b1, b2):
        # x: f32[N, C, H, W]  k1: f32[16/8, C, 3, 3]  k2: f32[5, 16/8, 3, 3]
        return jconv.sharding.conv_pair_block(
            x, k1, k2, b1, b2, axis_name="d", activation=jax.nn.relu, **kw
        )

    specs = (P(), P("d"), P(None, "d"), P("d"), P())
    f = jax.shard_map(user, mesh=mesh1d(), in_specs=specs, out_specs=P())
    args = [
        jax.device_put(a, NamedSharding(mesh1d(), s))
        for a, s in zip((x, k1, k2, b1, b2), specs, strict=True)
    ]
    close(jax.jit(f)(*args), _pair_ref(x, k1, k2, b1, b2, **kw))


# -- gradients -------------------------------------------------------------------------------


def _grads(f, x, kernel, bias, cotangent):
    return jax.jit(jax.grad(lambda *a: jnp.sum(f(*a) * cotangent), argnums=(0, 1, 2)))(
        x, kernel, bias
    )


@pytest.mark.parametrize(
    "strategy,kw,h",
    [
        ("batch", {"padding": "SAME"}, 16),
        ("out_channels", {"padding": "SAME"}, 16),
        ("in_channels", {"padding": "SAME"}, 16),
        ("spatial", {"padding": "SAME"}, 16),
        ("spatial", {"padding": ((2, 0), (1, 1)), "padding_mode": "reflect", "stride": 2}, 32),
        ("spatial", {"padding": (1, 0), "padding_mode": "circular", "dilation": 2}, 32),
        ("spatial", {"padding": 2, "stride": 3, "padding_mode": "replicate"}, 40),  # drift, cut
        ({"batch": "a", "out_channels": "b"}, {"padding": 1, "padding_mode": "replicate"}, 16),
        ({"spatial": ("a", "b")}, {"padding": 1, "padding_mode": "reflect"}, 16),
    ],
)
def test_gradients_equal_unsharded(strategy, kw, h):
    mesh = mesh2d() if isinstance(strategy, dict) else mesh1d()
    x, kernel, bias = make((8, 8, h, 8), 8, 3)
    kw = {**kw, **HIGHEST, "method": "xla"}
    y = jconv.conv2d(x, kernel, bias, **kw)
    cotangent = rand(9, y.shape)
    sharded = functools.partial(jconv.sharding.sharded_conv2d, mesh=mesh, strategy=strategy, **kw)
    got = _grads(sharded, x, kernel, bias, cotangent)
    want = _grads(functools.partial(jconv.conv2d, **kw), x, kernel, bias, cotangent)
    for g, r in zip(got, want, strict=True):
        close(g, r, tol=5e-5)


def test_conv_pair_gradients():
    x, k1, k2, b1, b2 = _pair_inputs()
    kw = dict(padding="SAME", **HIGHEST, method="xla")
    pair = functools.partial(
        jconv.sharding.sharded_conv_pair, mesh=mesh1d(), activation=jax.nn.relu, **kw
    )
    ref = functools.partial(_pair_ref, **kw)
    cot = rand(7, (4, 5, 8, 8))
    loss = lambda f: jax.jit(jax.grad(lambda *a: jnp.sum(f(*a) * cot), argnums=(0, 1, 2, 3, 4)))
    for g, r in zip(loss(pair)(x, k1, k2, b1, b2), loss(ref)(x, k1, k2, b1, b2), strict=True):
        close(g, r, tol=5e-5)


# -- communication: the compiled program against the cost model ---------------------------


@pytest.mark.parametrize(
    "strategy,expected",
    [
        ("batch", {}),
        ("out_channels", {}),
        ("in_channels", {"all-reduce": 1}),
        ("spatial", {"collective-permute": 2}),
    ],
)
def test_forward_collectives_and_bytes(strategy, expected):
    x, kernel, bias = make((8, 8, 16, 8), 8, 3)
    # method 'auto' (im2col here): the backward psum must still be on x, not on its patches
    f = functools.partial(
        jconv.sharding.sharded_conv2d, mesh=mesh1d(), strategy=strategy, padding="SAME"
    )
    forward = jax.jit(f).lower(x, kernel, bias).compile().as_text()
    assert jconv.sharding.count_collectives(forward) == expected
    model = jconv.sharding.sharded_conv2d_comm_bytes(
        x.shape, kernel.shape, strategy=strategy, devices=8, bias=True, padding="SAME"
    )
    sent = sum(c.bytes_sent for c in jconv.sharding.collectives_in_hlo(forward))
    assert sent == model.forward
    if strategy == "spatial":  # one halo row of (N, C, W) each way
        assert model.forward == 2 * 8 * 8 * 8 * 4

    loss = lambda *a: jnp.sum(f(*a) ** 2)
    both = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(x, kernel, bias).compile().as_text()
    sent = sum(c.bytes_sent for c in jconv.sharding.collectives_in_hlo(both))
    assert sent == model.forward + model.backward


@pytest.mark.parametrize(
    "groups",
    ["replica_groups={}", "", "replica_groups=[1,8]<=[8]", "replica_groups={{0,1,2,3,4,5,6,7}}"],
)
def test_collective_over_every_device_however_printed(groups):
    # XLA prints a group of every device in several ways; newer XLA prints `{}`
    hlo = (
        "HloModule jit_f, is_scheduled=true, num_partitions=8\n"
        "ENTRY %main {\n"
        "  %all-reduce = f32[8,8,3,3]{3,2,1,0} all-reduce(f32[8,8,3,3]{3,2,1,0} %p), "
        f"channel_id=1, {groups}, use_global_device_ids=true, to_apply=%add\n"
        "}\n"
    )
    (c,) = jconv.sharding.collectives_in_hlo(hlo)
    assert (c.kind, c.nbytes, c.group_size) == ("all-reduce", 8 * 8 * 3 * 3 * 4, 8)
    assert c.bytes_sent == 2 * 7 * c.nbytes // 8
    assert jconv.sharding.collectives_in_hlo(hlo, num_devices=4)[0].group_size == (
        4 if groups in ("replica_groups={}", "") else 8
    )


def test_in_channels_scatter_is_one_reduce_scatter():
    mesh = mesh1d()
    x, kernel, _ = make((2, 8, 8, 8), 16, 3)

    def f(x, k):
        # x: f32[N, C/8, H, W] -> f32[N, O/8, mh, mw]
        return jconv.sharding.conv2d_in_channels_block(
            x, k, axis_name="d", scatter=True, method="xla"
        )

    specs = (P(None, "d"), P(None, "d"))
    g = jax.jit(jax.shard_map(f, mesh=mesh, in_specs=specs, out_specs=P(None, "d")))
    x, kernel = (
        jax.device_put(a, NamedSharding(mesh, s)) for a, s in zip((x, kernel), specs, strict=True)
    )
    hlo = g.lower(x, kernel).compile().as_text()
    assert jconv.sharding.count_collectives(hlo) == {"reduce-scatter": 1}
    model = jconv.sharding.sharded_conv2d_comm_bytes(
        x.shape, kernel.shape, strategy="in_channels", devices=8, scatter=True
    )
    assert sum(c.bytes_sent for c in jconv.sharding.collectives_in_hlo(hlo)) == model.forward


def test_cost_model_figures():
    cost = functools.partial(
        jconv.sharding.sharded_conv2d_comm_bytes, (8, 64, 32, 32), (128, 64, 3, 3)
    )
    x_bytes, w_bytes = 8 * 64 * 32 * 32 * 4, 128 * 64 * 9 * 4
    assert cost(strategy="batch", devices=4) == (0, 2 * 3 * w_bytes // 4)
    assert cost(strategy="out_channels", devices=4) == (0, 2 * 3 * x_bytes // 4)
    y_bytes = 8 * 128 * 30 * 30 * 4
    assert cost(strategy="in_channels", devices=4) == (2 * 3 * y_bytes // 4, 0)
    # 'SAME' 3x3 on blocks of 8 rows: one row from each neighbour
    halo = 2 * 8 * 64 * 32 * 4
    assert cost(strategy="spatial", devices=4, padding="SAME") == (
        halo,
        halo + 2 * 3 * w_bytes // 4,
    )
    # bfloat16 halves everything; one device sends nothing
    assert cost(strategy="spatial", devices=4, padding="SAME", dtype=jnp.bfloat16).forward == (
        halo // 2
    )
    assert cost(strategy="batch", devices=1) == (0, 0)
    with pytest.raises(ValueError, match="unknown strategy"):
        cost(strategy="pipeline", devices=4)


# -- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "strategy,x_shape,o,match",
    [
        ("batch", (6, 8, 16, 16), 8, r"batch size N of x \(6\).*\(8\).*'d'"),
        ("out_channels", (8, 8, 16, 16), 12, r"output channels O of the kernel \(12\).*'d'"),
        ("in_channels", (8, 12, 16, 16), 8, r"input channels C .*\(12\).*\(8\).*'d'"),
        ("spatial", (8, 8, 12, 16), 8, r"height of x \(12\).*\(8\).*'d'"),
    ],
)
def test_refuses_indivisible(strategy, x_shape, o, match):
    x, kernel, _ = make(x_shape, o, 3)
    with pytest.raises(ValueError, match=match):
        jconv.sharding.sharded_conv2d(x, kernel, mesh=mesh1d(), strategy=strategy)


def test_refuses_bad_names_and_halos():
    x, kernel, _ = make((8, 8, 16, 16), 8, 3)
    mesh = mesh1d()
    with pytest.raises(ValueError, match="unknown strategy 'pipeline'"):
        jconv.sharding.sharded_conv2d(x, kernel, mesh=mesh, strategy="pipeline")
    with pytest.raises(ValueError, match="unknown strategy 'depth'"):
        jconv.sharding.sharded_conv2d(
            x, kernel, mesh=mesh2d(), strategy={"batch": "a", "depth": "b"}
        )
    with pytest.raises(ValueError, match="unknown mesh axis 'model'"):
        jconv.sharding.sharded_conv2d(x, kernel, mesh=mesh, strategy="batch", axis="model")
    with pytest.raises(ValueError, match="unknown mesh axis 'c'"):
        jconv.sharding.sharded_conv2d(
            x, kernel, mesh=mesh2d(), strategy={"batch": "a", "out_channels": "c"}
        )
    with pytest.raises(ValueError, match="one thing only"):
        jconv.sharding.sharded_conv2d(
            x, kernel, mesh=mesh2d(), strategy={"batch": "a", "out_channels": "a"}
        )
    with pytest.raises(ValueError, match="axis is for a single strategy"):
        jconv.sharding.sharded_conv2d(x, kernel, mesh=mesh2d(), strategy={"batch": "a"}, axis="a")
    # 16 rows over 8 devices: blocks of 2 rows, a 7x7 'SAME' kernel needs 3
    big = rand(3, (8, 8, 7, 7))
    with pytest.raises(ValueError, match="smaller than its halo"):
        jconv.sharding.sharded_conv2d(x, big, mesh=mesh, strategy="spatial", padding="SAME")
    # reflect needs rows 0..2 of the image on the edge device, which holds 2
    with pytest.raises(ValueError, match=r"reflect padding of \(2, 2\).*smaller than its halo"):
        jconv.sharding.sharded_conv2d(
            x, rand(4, (8, 8, 5, 5)), mesh=mesh, strategy="spatial", padding=2,
            padding_mode="reflect",
        )  # fmt: skip
    with pytest.raises(ValueError, match="groups=1 only"):
        jconv.sharding.sharded_conv2d(
            x, rand(5, (8, 4, 3, 3)), mesh=mesh, strategy="in_channels", groups=2
        )
    with pytest.raises(ValueError, match="x has no batch axis"):
        jconv.sharding.sharded_conv2d(x[0], kernel, mesh=mesh, strategy="batch")
    with pytest.raises(ValueError, match="channel mismatch"):  # conv2d's own checks apply
        jconv.sharding.sharded_conv2d(x, rand(6, (8, 4, 3, 3)), mesh=mesh, strategy="batch")
    with pytest.raises(TypeError, match="unexpected keyword"):
        jconv.sharding.sharded_conv2d(x, kernel, mesh=mesh, strategy="batch", strides=2)


def test_block_outside_shard_map_is_refused():
    x, kernel, _ = make((8, 8, 16, 16), 8, 3)
    with pytest.raises(ValueError, match="not bound"):
        jconv.sharding.conv2d_spatial_block(x, kernel, axis_name="d")


# -- data-parallel training: shard_map and pmap -------------------------------------------


def _cnn_loss(params, batch):
    """A two-layer CNN on jconv.conv2d: conv-relu-conv, global average pool, squared error."""
    kw = dict(padding=1, method="xla", **HIGHEST)
    h = jax.nn.relu(jconv.conv2d(batch["x"], params["w1"], params["b1"], **kw))
    h = jconv.conv2d(h, params["w2"], params["b2"], **kw)
    return jnp.mean((h.mean(axis=(2, 3)) - batch["y"]) ** 2)


OPTIMIZER = optax.sgd(0.1, momentum=0.9)  # one object, so that the reference compiles once


def _train_setup():
    params = {
        "w1": rand(0, (4, 3, 3, 3)),
        "b1": rand(1, (4,)),
        "w2": rand(2, (2, 4, 3, 3)),
        "b2": rand(3, (2,)),
    }
    batch = {"x": rand(4, (16, 3, 8, 8)), "y": rand(5, (16, 2))}
    return params, batch, OPTIMIZER


@functools.partial(jax.jit, static_argnums=3)
def _reference_step(params, state, batch, optimizer):
    loss, grads = jax.value_and_grad(_cnn_loss)(params, batch)
    updates, state = optimizer.update(grads, state, params)
    return optax.apply_updates(params, updates), state, loss


def _reference_steps(params, batch, optimizer, steps=2):
    """The same steps on one device, on the whole batch."""
    state = optimizer.init(params)
    for _ in range(steps):
        params, state, loss = _reference_step(params, state, batch, optimizer)
    return params, loss


def test_data_parallel_step_shard_map():
    params, batch, optimizer = _train_setup()
    step = jconv.sharding.data_parallel_step(_cnn_loss, optimizer, mesh=mesh1d())
    # placed as the step leaves them, so that the second step reuses the first's program
    p, state = jax.device_put((params, optimizer.init(params)), NamedSharding(mesh1d(), P()))
    for _ in range(2):
        p, state, loss = step(p, state, batch)
    want, want_loss = _reference_steps(params, batch, optimizer)
    close(loss, want_loss, tol=1e-5)
    for k in params:
        close(p[k], want[k], tol=1e-5)
    assert p["w1"].sharding.is_fully_replicated
    with pytest.raises(ValueError, match=r"batch size \(12.*'d'"):
        step(p, state, {"x": batch["x"][:12], "y": batch["y"][:12]})


def test_data_parallel_step_pmap():
    params, batch, optimizer = _train_setup()
    step = jconv.sharding.pmap_data_parallel_step(
        _cnn_loss, optimizer, axis_name="batch", devices=CPU_DEVICES
    )
    p = jconv.sharding.replicate(params, 8)
    state = jconv.sharding.replicate(optimizer.init(params), 8)
    shards = jconv.sharding.split_batch(batch, 8)
    assert shards["x"].shape == (8, 2, 3, 8, 8)
    p, state, loss = step(p, state, shards)
    want, want_loss = _reference_steps(params, batch, optimizer, steps=1)
    close(loss[0], want_loss, tol=1e-5)
    for k in params:
        for d in range(8):
            close(p[k][d], want[k], tol=1e-5)


# -- the halo geometry, exhaustively, without JAX ------------------------------------------


def _simulate_halo(plan, image):
    """Each device's window, assembled from plan's figures as extend_with_halo does (NumPy)."""
    d_, b = plan.devices, plan.block
    blocks = image.reshape(d_, b)
    ring = plan.padding_mode == "circular"
    windows = []
    for d in range(d_):
        own = blocks[d]
        left = np.zeros(plan.left)
        if plan.from_left and (ring or d > 0):
            left[plan.left - plan.from_left :] = blocks[(d - 1) % d_][b - plan.from_left :]
        right = np.zeros(plan.right)
        if plan.from_right and (ring or d < d_ - 1):
            right[: plan.from_right] = blocks[(d + 1) % d_][: plan.from_right]
        if plan.padding_mode == "replicate":
            left = np.full(plan.left, own[0]) if d == 0 else left
            right = np.full(plan.right, own[-1]) if d == d_ - 1 else right
        if plan.padding_mode == "reflect":
            if d == 0:
                left = own[np.minimum(np.arange(plan.left, 0, -1), b - 1)]
            if d == d_ - 1:
                right = own[np.maximum(b - 2 - np.arange(plan.right), 0)]
        buffer = np.concatenate([left, own, right, np.zeros(plan.tail)])
        off = plan.offsets[d]
        assert off >= 0 and off + plan.length <= len(buffer)
        windows.append(buffer[off : off + plan.length])
    return windows


def test_halo_geometry_exhaustive():
    """Every accepted (size, devices, taps, dilation, stride, pads, mode): each device's window
    holds exactly the padded rows its output rows read."""
    from jconv._shard_halo import plan_halo

    np_mode = {"zeros": "constant", "circular": "wrap", "reflect": "reflect", "replicate": "edge"}
    accepted = refused = 0
    for size, devices in [(8, 2), (8, 4), (12, 3), (12, 4), (16, 8), (20, 4), (9, 1)]:
        image = np.arange(1.0, size + 1)
        for taps, dil, stride, top, bottom, mode in np.ndindex(4, 3, 3, 4, 4, 4):
            taps, dil, stride = taps + 1, dil + 1, stride + 1
            mode = MODES[mode]
            window = (taps - 1) * dil + 1
            if size + top + bottom < window or (mode == "reflect" and max(top, bottom) >= size):
                continue
            try:
                plan = plan_halo(
                    size=size, devices=devices, pads=(top, bottom), taps=taps, dilation=dil,
                    stride=stride, padding_mode=mode,
                )  # fmt: skip
            except ValueError as e:
                assert "smaller than its halo" in str(e)
                refused += 1
                continue
            accepted += 1
            padded = np.pad(image, (top, bottom), mode=np_mode[mode])
            for d, win in enumerate(_simulate_halo(plan, image)):
                real = min(plan.out_block, plan.out_size - d * plan.out_block)
                rows = (np.arange(max(real, 0)) * stride)[:, None] + dil * np.arange(taps)
                start = d * plan.out_block * stride
                assert np.array_equal(win[rows], padded[start + rows]), (plan, d)
    assert accepted > 5000 and refused < accepted
