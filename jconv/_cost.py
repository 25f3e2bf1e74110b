"""Arithmetic cost of a convolution: O(ci * co * kh * kw * mh * mw), as the lesson counts it."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jconv._checks import check_conv_args, check_device_count
from jconv._shard_blocks import STRATEGIES, Axes, plan_sharded_conv
from jconv._shard_hlo import ring_all_reduce_bytes, ring_gather_bytes
from jconv._subpixel import multiply_adds
from jconv._typing import DTypeLike, IntLike, IntPair, PaddingLike, ShapeLike


def conv2d_flops(
    x_shape: ShapeLike,
    kernel_shape: ShapeLike,
    *,
    stride: IntPair = 1,
    padding: PaddingLike = "VALID",
    dilation: IntPair = 1,
    groups: IntLike = 1,
    layout: str = "NCHW",
    input_dilation: IntPair = 1,
) -> int:
    """Floating-point operations of conv2d on these shapes, a multiply-add counted as two.

    Every output element (N * O * mh * mw of them) is a sum of
    (C / groups) * kh * kw products. Shapes and arguments mean what they mean
    in conv2d (an unbatched x counts as one sample); the bias is not counted.
    With input dilation (or a crop) the products are those conv2d does: per
    output, only the taps that land on a pixel of x or on the padding, never
    on an inserted zero (jconv/_subpixel.py).

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
        input_dilation=input_dilation,
        transposed_ok=True,
    )
    if not spec.is_plain:
        return 2 * multiply_adds(spec)
    mh, mw = spec.out_hw
    return 2 * spec.n * spec.o * mh * mw * spec.cg * spec.kh * spec.kw


class CommBytes(NamedTuple):
    """Bytes one device sends in a sharded convolution's forward and backward passes."""

    forward: int
    backward: int  # gradients of x, the kernel and the bias (if any)


def sharded_conv2d_comm_bytes(
    x_shape: ShapeLike,
    kernel_shape: ShapeLike,
    *,
    strategy: str,
    devices: IntPair,
    bias: bool = False,
    dtype: DTypeLike = "float32",
    stride: IntPair = 1,
    padding: PaddingLike = "VALID",
    dilation: IntPair = 1,
    groups: IntLike = 1,
    padding_mode: str = "zeros",
    layout: str = "NCHW",
    scatter: bool = False,
) -> CommBytes:
    """Bytes each device sends when sharded_conv2d splits this convolution over `devices`.

    Shapes are the global ones, as for conv2d; `devices` is the size of the mesh
    axis (for 'spatial', an int splits the height, a pair (Dh, Dw) both). A
    collective of S bytes costs, per device, what a ring sends: an all-reduce
    2 (D - 1) / D * S, a reduce-scatter or all-gather (D - 1) / D * S, a
    collective-permute (the halo exchange) its operand; an interior device is
    counted (the edge devices of a non-circular image send one side only).

    - 'batch': forward 0; backward all-reduces the kernel's (and bias's) gradient.
    - 'out_channels': forward 0; backward all-reduces the gradient of the
      replicated x.
    - 'in_channels': forward all-reduces the output (scatter=True: reduce-scatters
      it); backward 0 (with scatter, all-gathers the output's gradient).
    - 'spatial': forward sends the halo rows (then columns) to the neighbours;
      backward sends the halo gradients back and all-reduces the kernel's.

    The two-convolution block (jconv.sharding.sharded_conv_pair) costs the sum of its
    first conv as 'out_channels' and its second as 'in_channels'.

    >>> import jconv
    >>> jconv.sharding.sharded_conv2d_comm_bytes((8, 64, 32, 32), (64, 64, 3, 3),
    ...                                          strategy="in_channels", devices=8, padding="SAME")
    CommBytes(forward=3670016, backward=0)
    """
    spec = check_conv_args(
        x_shape,
        kernel_shape,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
        layout=layout,
    )
    counts = check_device_count(devices, pair=strategy == "spatial")
    item = np.dtype(dtype).itemsize
    mh, mw = spec.out_hw
    x_bytes = spec.n * spec.c * spec.height * spec.width * item
    y_bytes = spec.n * spec.o * mh * mw * item
    w_bytes = (spec.o * spec.cg * spec.kh * spec.kw + (spec.o if bias else 0)) * item
    if strategy == "spatial":
        dh, dw = counts if len(counts) == 2 else (counts[0], 1)
        axes = Axes(height="h" if dh > 1 else None, width="w" if dw > 1 else None)
        plan = plan_sharded_conv(spec, axes, {"h": dh, "w": dw})
        sent = 0
        rows_h = spec.height
        if plan.halo_h is not None:
            sent += plan.halo_h.rows_sent * spec.n * spec.c * (spec.width // dw) * item
            rows_h = plan.halo_h.length
        if plan.halo_w is not None:
            sent += plan.halo_w.rows_sent * spec.n * spec.c * rows_h * item
        return CommBytes(sent, sent + ring_all_reduce_bytes(w_bytes, dh * dw))
    (d,) = counts
    if strategy == "batch":
        return CommBytes(0, ring_all_reduce_bytes(w_bytes, d))
    if strategy == "out_channels":
        return CommBytes(0, ring_all_reduce_bytes(x_bytes, d))
    if strategy == "in_channels":
        if scatter:
            return CommBytes(ring_gather_bytes(y_bytes, d), ring_gather_bytes(y_bytes, d))
        return CommBytes(ring_all_reduce_bytes(y_bytes, d), 0)
    raise ValueError(f"unknown strategy {strategy!r}: strategies are {STRATEGIES}")
