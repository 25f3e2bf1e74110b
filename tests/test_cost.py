"""conv2d_flops: the lesson's arithmetic."""

from __future__ import annotations

import pytest

import jconv


def test_lesson_worked_example():
    """ci = co = 100, 5x5 kernel, 64x64 output: about 1 G multiply-adds per sample;
    10 layers and 1 M samples: about 10 P."""
    flops = jconv.conv2d_flops((1, 100, 68, 68), (100, 100, 5, 5))
    macs = flops // 2
    assert macs == 100 * 100 * 5 * 5 * 64 * 64 == 1_024_000_000
    assert 10 * 1_000_000 * macs == pytest.approx(1e16, rel=0.03)


@pytest.mark.parametrize(
    "x_shape,k_shape,kwargs,expected_macs",
    [
        ((2, 3, 9, 9), (4, 3, 3, 3), {}, 2 * 4 * 7 * 7 * 3 * 9),
        ((2, 3, 9, 9), (4, 3, 3, 3), {"stride": 2, "padding": "SAME"}, 2 * 4 * 5 * 5 * 27),
        ((6, 9, 9), (6, 1, 3, 3), {"groups": 6, "padding": 1}, 6 * 9 * 9 * 9),
        ((1, 9, 9, 4), (3, 3, 2, 8), {"groups": 2, "layout": "NHWC"}, 8 * 7 * 7 * 2 * 9),
        ((1, 2, 10, 10), (1, 2, 3, 3), {"dilation": 2}, 6 * 6 * 18),
    ],
)
def test_flops_count_two_per_multiply_add(x_shape, k_shape, kwargs, expected_macs):
    assert jconv.conv2d_flops(x_shape, k_shape, **kwargs) == 2 * expected_macs


def test_flops_checks_its_arguments():
    with pytest.raises(ValueError, match="channel mismatch"):
        jconv.conv2d_flops((1, 3, 8, 8), (4, 2, 3, 3))


@pytest.mark.parametrize(
    "bad,exc,match",
    [
        ("8", TypeError, r"shape must hold ints, got \('8', "),
        (8.0, TypeError, r"shape must hold ints, got \(8\.0, "),
        (True, TypeError, r"shape must hold ints, got \(True, "),
        (-8, ValueError, r"shape must not be negative, got \(-8, "),
    ],
)
@pytest.mark.parametrize("argument", ["x", "kernel"])
def test_flops_refuse_bad_shapes(argument, bad, exc, match):
    """A shape entry that is not an int (or is negative) is refused, naming the argument."""
    x_shape, k_shape = [8, 3, 32, 32], [16, 3, 3, 3]
    (x_shape if argument == "x" else k_shape)[0] = bad
    with pytest.raises(exc, match=f"{argument} {match}"):
        jconv.conv2d_flops(tuple(x_shape), tuple(k_shape))


@pytest.mark.parametrize("strategy", ["batch", "out_channels", "in_channels", "spatial"])
@pytest.mark.parametrize(
    "devices,exc",
    [(0, ValueError), (-1, ValueError), (True, TypeError), (2.5, TypeError), ("4", TypeError)],
)
def test_comm_bytes_refuse_bad_device_counts(strategy, devices, exc):
    with pytest.raises(exc, match=r"devices must be .*got " + repr(devices).replace(".", r"\.")):
        jconv.sharding.sharded_conv2d_comm_bytes(
            (8, 64, 32, 32), (128, 64, 3, 3), strategy=strategy, devices=devices
        )


@pytest.mark.parametrize("devices", [(2, 0), (2, True), (2.0, 2), (1, 2, 3)])
def test_comm_bytes_refuse_bad_spatial_pairs(devices):
    with pytest.raises((TypeError, ValueError), match="devices must be"):
        jconv.sharding.sharded_conv2d_comm_bytes(
            (8, 64, 32, 32), (128, 64, 3, 3), strategy="spatial", devices=devices
        )


def test_comm_bytes_one_count_for_channel_strategies():
    with pytest.raises(TypeError, match=r"devices must be an int, at least 1; got \(2, 2\)"):
        jconv.sharding.sharded_conv2d_comm_bytes(
            (8, 64, 32, 32), (128, 64, 3, 3), strategy="batch", devices=(2, 2)
        )


@pytest.mark.parametrize(
    "method,transposed",
    [("auto", False), ("xla", False), ("winograd", False), ("auto", True), ("xla", True)],
)
@pytest.mark.usefixtures("on_cpu")  # XLA's GPU cost analysis counts no flops (seen on an H200)
def test_compiled_flops_add_up_over_reused_blocks(method, transposed):
    """Flax's summary test (test_module_reuse), with jconv's layers: a CNN that calls one
    block three times costs, in XLA's cost analysis of its program (Flax's compute_flops and
    compute_vjp_flops), the sum of its three calls, each the block's own cost: exactly, for
    counts that float32 holds exactly (XLA's cost analysis rounds its totals to float32:
    see the README's Flax section)."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    from flax.linen import summary

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x):
            if transposed:  # up 2x and back down: the block's output fits its input
                x = jconv.linen.ConvTranspose(8, (4, 4), strides=(2, 2), method=method)(x)
                return nn.relu(jconv.linen.Conv(8, (3, 3), strides=2, method=method)(x))
            return nn.relu(jconv.linen.Conv(8, (3, 3), method=method)(x))

    class CNN(nn.Module):
        @nn.compact
        def __call__(self, x):
            block = Block()
            return block(block(block(x)))

    args = ({"params": jax.random.key(1)}, jnp.ones((2, 6, 6, 8)))
    table = lambda m: summary._get_module_table(
        m, depth=1, show_repeated=True, compute_flops=True, compute_vjp_flops=True
    )(*args)
    cnn, block = table(CNN()), table(Block())
    assert cnn[0].flops == sum(r.flops for r in cnn[1:]) == 3 * block[0].flops > 0
    assert cnn[0].vjp_flops == sum(r.vjp_flops for r in cnn[1:]) == 3 * block[0].vjp_flops > 0
