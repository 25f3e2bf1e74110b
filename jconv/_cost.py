"""Arithmetic cost of a convolution: O(ci * co * kh * kw * mh * mw), as the lesson counts it."""

from __future__ import annotations

from jconv._checks import check_conv_args
from jconv._typing import IntPair, PaddingLike, Shape


def conv2d_flops(
    x_shape: Shape,
    kernel_shape: Shape,
    *,
    stride: IntPair = 1,
    padding: PaddingLike = "VALID",
    dilation: IntPair = 1,
    groups: int = 1,
    layout: str = "NCHW",
) -> int:
    """Floating-point operations of conv2d on these shapes, a multiply-add counted as two.

    Every output element (N * O * mh * mw of them) is a sum of
    (C / groups) * kh * kw products. Shapes and arguments mean what they mean
    in conv2d (an unbatched x counts as one sample); the bias is not counted.

    The lesson's layer: 100 -> 100 channels, 5x5 kernel, 64x64 output, about
    1 G multiply-adds per sample:

    >>> import jconv
    >>> jconv.conv2d_flops((100, 68, 68), (100, 100, 5, 5)) // 2
    1024000000
    """
    spec = check_conv_args(
        x_shape,
        kernel_shape,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        layout=layout,
    )
    mh, mw = spec.out_hw
    return 2 * spec.n * spec.o * mh * mw * spec.cg * spec.kh * spec.kw
