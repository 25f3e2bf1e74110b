"""LeNet, with the convolution layer's class as a parameter.

The same network is built from jconv.nnx.Conv or flax.nnx.Conv (the two take
the same constructor arguments), so that a comparison between them changes
nothing else.
"""

from __future__ import annotations

from typing import Protocol

import jax
from flax import nnx

import jconv

DATA, MODEL = "data", "model"  # ShardedConv's mesh axes: the batch's and the model's


class ConvFactory(Protocol):
    """A conv layer's constructor, as flax.nnx.Conv's: NHWC input, HWIO kernel."""

    def __call__(
        self, in_features: int, out_features: int, kernel_size: tuple[int, int], *, padding: str,
        rngs: nnx.Rngs,
    ) -> nnx.Module: ...  # fmt: skip


def check_image_shape(image_shape: tuple[int, ...]) -> None:
    """Refuse images LeNet cannot classify: its last pooling needs at least 2x2 pixels."""
    h, w = image_shape[:2]
    if h < 2 or w < 2:
        raise ValueError(f"images of {h}x{w} pixels: LeNet needs images of at least 2x2 pixels")


class LeNet(nnx.Module):
    """LeNet-5 with ReLU: two 5x5 conv layers (6 and 16 channels), each followed by
    2x2 average pooling, then dense layers of 120, 84 and num_classes units.

    Both convs pad 'SAME'. On images smaller than 16 pixels the first pooling is
    left out: pooling 8x8 digits twice would leave 2x2 pixels to classify from
    (measured: 96-98% test accuracy instead of 98.5-99.5%). So 8x8 digits
    flatten to 16 * 4 * 4 features, 28x28 Fashion-MNIST to 16 * 7 * 7.
    """

    def __init__(
        self,
        conv: ConvFactory,
        *,
        image_shape: tuple[int, int, int],
        num_classes: int,
        rngs: nnx.Rngs,
    ):
        check_image_shape(image_shape)
        h, w, c = image_shape
        self.pool_first = min(h, w) >= 16
        self.conv_heights = (h, h // 2 if self.pool_first else h)  # conv1's and conv2's input
        pools = 2 if self.pool_first else 1
        self.conv1 = conv(c, 6, (5, 5), padding="SAME", rngs=rngs)
        self.conv2 = conv(6, 16, (5, 5), padding="SAME", rngs=rngs)
        self.fc1 = nnx.Linear(16 * (h >> pools) * (w >> pools), 120, rngs=rngs)
        self.fc2 = nnx.Linear(120, 84, rngs=rngs)
        self.fc3 = nnx.Linear(84, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        # x: f32[N, H, W, C] -> logits f32[N, num_classes]
        x = nnx.relu(self.conv1(x))  # [N, H, W, 6]
        if self.pool_first:
            x = nnx.avg_pool(x, (2, 2), strides=(2, 2))  # [N, H/2, W/2, 6]
        x = nnx.avg_pool(nnx.relu(self.conv2(x)), (2, 2), strides=(2, 2))  # [N, H/4, W/4, 16]
        x = x.reshape(x.shape[0], -1)
        x = nnx.relu(self.fc1(x))
        x = nnx.relu(self.fc2(x))
        return self.fc3(x)


class ShardedConv(nnx.Module):
    """A conv layer run by jconv.sharding.sharded_conv2d on a ('data', 'model') device mesh.

    The batch is split over 'data' and, where this layer's sizes allow it,
    `strategy` ('out_channels', 'in_channels' or 'spatial') over 'model'; a layer
    they do not allow (LeNet's first conv has one input channel, which cannot be
    split) runs batch-parallel only. Parameters as flax.nnx.Conv's: `kernel`
    (kh, kw, C, O) and `bias` (O,), drawn in the same order from the same
    initializers, so the same seed gives the same network as the other convs.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: tuple[int, int],
        *,
        padding: str,
        rngs: nnx.Rngs,
        mesh: jax.sharding.Mesh,
        strategy: str,
        method: str = "auto",
    ):
        kernel_shape = (*kernel_size, in_features, out_features)
        self.kernel = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), kernel_shape))
        self.bias = nnx.Param(nnx.initializers.zeros_init()(rngs.params(), (out_features,)))
        self.in_features, self.out_features = in_features, out_features
        self.kernel_size, self.padding = kernel_size, padding
        self.mesh, self.strategy, self.method = mesh, strategy, method

    def strategies(self, height: int) -> dict[str, str]:
        """sharded_conv2d's strategy for an input `height` pixels high."""
        k = self.mesh.shape[MODEL]
        fits = {
            "out_channels": self.out_features % k == 0,
            "in_channels": self.in_features % k == 0,
            # each device's rows must hold the halo its neighbours need
            "spatial": height % k == 0 and height // k >= self.kernel_size[0] // 2,
        }[self.strategy]
        return {"batch": DATA, self.strategy: MODEL} if fits and k > 1 else {"batch": DATA}

    def __call__(self, x: jax.Array) -> jax.Array:
        # x: f32[N, H, W, C] (global) -> f32[N, mh, mw, O]
        return jconv.sharding.sharded_conv2d(
            x,
            self.kernel[...],
            self.bias[...],
            mesh=self.mesh,
            strategy=self.strategies(x.shape[1]),
            layout="NHWC",
            padding=self.padding,
            method=self.method,
        )
