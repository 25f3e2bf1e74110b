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
    "method,transposed",
    [("auto", False), ("xla", False), ("winograd", False), ("auto", True), ("xla", True)],
)
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
