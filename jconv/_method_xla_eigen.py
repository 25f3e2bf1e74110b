"""lax's convolution kept on XLA:CPU's own convolution kernel: lowerings only 'auto' picks.

XLA's CPU backend (jax 0.10) hands a float32 convolution to YNNPACK where it
can: an NHWC-shaped problem (it transposes NCHW into that shape first), more
than 16 input or output channels, no input dilation, and an output no longer
than its input along either spatial axis. Anything else runs on its own
kernel, Eigen's tensor-contraction convolution. On this project's 2-core
machines YNNPACK's convolution ran on one core at the suite's batch sizes (pinned
to one core: the same time) and Eigen's on both: 1.1x to 1.9x faster forward and
1.2x to 1.8x with the gradient on 16 to 128 channels with 3x3 to 7x7 kernels, where
'auto' takes it (jconv/_auto.py's `_eigen_wins`; BENCHMARKS.md, session 14).

The last of those conditions is the lever a library holds, since XLA's options
belong to the caller's jit: pad `extra` more rows (or columns) on the high side,
so that the output comes out one pixel longer than the input, and slice them
off. It costs extra / mh more multiply-adds (1/56 on a 56x56 image) and leaves
the products and sums lax forms, computed by the other kernel (so rounded
differently, as two BLAS differ).

The input gradient at stride 1 is a stride-1 correlation of dy with the flipped
kernel, given the same extra pixel; a strided one is input-dilated, which
YNNPACK does not take anyway, so lax's. The kernel gradient is lax's own
(YNNPACK's; Eigen's kernel-gradient convolution ran 10x to 20x slower) without
groups, and 'taps''s with them: lax's grouped kernel gradient, a convolution
with a batch group count, took 135 ms to 2 s where 'taps''s took 3 to 40 ms
(BENCHMARKS.md, session 14). With a few channels per group on small images 'auto'
runs 'taps''s forward pass with these gradients instead (TAPS_EIGEN_GRADIENTS), and on
the 2x2 sub-pixel phases of bfloat16 transposed layers 'winograd''s
(WINOGRAD_EIGEN_GRADIENTS: 'winograd''s own gradients made those programs too slow to
compile, lax's bfloat16 forward pass is slow; session 16). On grouped convolutions with a
few channels per group 'auto' runs GROUPED_ELEMENTWISE, which leaves lax only the members
it cannot do better: the forward pass and the input gradient as elementwise sums (the
depthwise layers' `elementwise_y`), the kernel gradient by the depthwise layers' scans on
large images (session 17).

Example (the result is lax's convolution's, to rounding):

>>> import jax, jax.numpy as jnp
>>> from jconv._checks import check_conv_args
>>> spec = check_conv_args((2, 8, 8, 32), (3, 3, 32, 32), x_dtype=jnp.float32,
...                        kernel_dtype=jnp.float32, padding="SAME", layout="NHWC")
>>> extension(spec)
(0, 1)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from jconv._checks import ConvSpec
from jconv._conv_primitive import lowered_conv
from jconv._layouts import LAYOUT_INFO, transposed_kernel
from jconv._lowering import Forward, Lowering, member, transpose_in_w, transpose_in_x
from jconv._method_depthwise import elementwise_y, grouped_dw
from jconv._method_taps import TAPS
from jconv._method_winograd import WINOGRAD, winograd_supported
from jconv._method_xla import conv_xla
from jconv._subpixel import crop_undilated
from jconv._typing import Array

MAX_EXTRA = 0.125  # extra outputs along the extended axis: at most this fraction of them
# Multiply-adds per output of an elementwise sum (channels per group times taps) up to which
# XLA's CPU backend ran it as one fast loop: 100 (4 channels, 5x5) and 72 (8, 3x3) ran 2x to
# 5x lax's grouped convolution; 144 (16, 3x3) and 200 (8, 5x5) ran 5x to 6x slower than it
ELEMENTWISE_MAX_TERMS = 100
# ... and channels summed a tap: with 10 and 11 a group (90 and 99 products, 3x3) the sums
# tied lax's forward pass and ran its input gradient 2.4x slower
ELEMENTWISE_MAX_CHANNELS = 8
# GROUPED_ELEMENTWISE's kernel gradient by the depthwise scans (`_grouped_dw`) where 'taps''s
# GEMMs would copy at least this much of x's windows (kh * kw copies, in the accumulation
# dtype): from 6.9 MiB up it ran 2x to 10x faster, at 5.2 MiB a tie
SCAN_MIN_WINDOW_BYTES = 6 * 2**20
SCAN_MAX_TAPS = 9  # kh * kw: with a 5x5 kernel the scans compiled in 2.6 s with the rest
SCAN_MAX_OUTPUTS = 8  # O/groups: with 16 the scans ran the step 0.63x to 0.75x, with 32 a tie


def extension(spec: ConvSpec) -> tuple[int, int] | None:
    """(axis, extra): the spatial axis (0 height, 1 width) along which `extra` more outputs
    make the output longer than the input, the cheaper of the two; None where both cost
    more than MAX_EXTRA of the outputs, or where the input is dilated (YNNPACK never
    takes those: nothing to steer)."""
    if spec.input_dilation != (1, 1):
        return None
    options = []
    for axis, (size, out) in enumerate(zip((spec.height, spec.width), spec.out_hw)):
        extra = max(0, size - out + 1)
        if extra <= MAX_EXTRA * out:
            options.append((extra / out, axis, extra))
    if not options:
        return None
    _, axis, extra = min(options)
    return axis, extra


def _extended(spec: ConvSpec, axis: int, extra: int) -> ConvSpec:
    """spec with `extra * stride` more zero rows (axis 0) or columns (1) on the high side."""
    (top, bottom), (left, right) = spec.pads
    more = extra * spec.stride[axis]
    if axis == 0:
        return dataclasses.replace(spec, pads=((top, bottom + more), (left, right)))
    return dataclasses.replace(spec, pads=((top, bottom), (left, right + more)))


def eigen_y(x: Array, w: Array, spec: ConvSpec) -> Array:
    """x: batched, spec.layout; w: (O, C/groups, kh, kw) -> lax's convolution, computed
    with `extension(spec)`'s extra outputs, which are then dropped."""
    ext = extension(spec)
    if ext is None:
        return conv_xla(x, w, spec)
    axis, extra = ext
    y = conv_xla(x, w, _extended(spec, axis, extra))
    dim = LAYOUT_INFO[spec.layout].spatial_axes[axis]
    return jax.lax.slice_in_dim(y, 0, spec.out_hw[axis], axis=dim)


def short_sums(channels: int, spec: ConvSpec) -> bool:
    """Whether an elementwise sum over `channels` channels a group and spec's taps stays
    within ELEMENTWISE_MAX_CHANNELS and ELEMENTWISE_MAX_TERMS (C/groups for the forward
    pass, O/groups for the input gradient)."""
    return (
        channels <= ELEMENTWISE_MAX_CHANNELS
        and channels * spec.kh * spec.kw <= ELEMENTWISE_MAX_TERMS
    )


def _correlated_dy(forward: Forward, dy: Array, w: Array, spec: ConvSpec) -> Array:
    """dx at stride 1: dy correlated with the flipped kernel (conv_transpose2d's kernel) and
    padded to come out (H, W), computed by `forward` as a convolution of its own."""
    mh, mw = spec.out_hw
    dx_spec = dataclasses.replace(
        spec, c=spec.o, o=spec.c, height=mh, width=mw, pads=spec.input_gradient_pads,
        preferred_element_type=None,
    )  # fmt: skip
    w_t = transposed_kernel(w, spec.groups, "NCHW")
    return forward(dy, w_t, dx_spec).astype(spec.dtype)


def _one_dtype(spec: ConvSpec) -> bool:
    """Whether the result's dtype is the inputs' (else the input gradient's correlation
    would take operands of two dtypes)."""
    return np.dtype(spec.out_dtype) == np.dtype(spec.dtype)


def _eigen_dx(dy: Array, w: Array, spec: ConvSpec) -> Array:
    """dx: at stride 1 `_correlated_dy` by `eigen_y`; strided, or with a result dtype other
    than the inputs', lax's transpose of its convolution."""
    if spec.stride != (1, 1) or not _one_dtype(spec):
        return transpose_in_x(conv_xla, dy, w, spec)
    return _correlated_dy(eigen_y, dy, w, spec)


def _cropped_elementwise_y(x: Array, w: Array, spec: ConvSpec) -> Array:
    """elementwise_y where spec's padding may be negative (beyond the kernel's reach, as
    an input gradient's can be): x cropped there first."""
    x, spec = crop_undilated(x, spec)
    return elementwise_y(x, w, spec)


def _elementwise_dx(dy: Array, w: Array, spec: ConvSpec) -> Array:
    """dx: at stride 1 `_correlated_dy` as an elementwise sum, O/groups multiply-adds per
    tap and output (the padding's zeros times the kernel as lax's transpose forms them,
    as `_eigen_dx` does); where those sums are not `short_sums`, or with a result dtype
    other than the inputs', `_eigen_dx`; strided, 'taps''s (lax's input-dilated transpose
    ran the step 0.70x to 0.85x on grouped layers, BENCHMARKS.md session 17)."""
    if spec.stride != (1, 1):
        return member(TAPS, "dx", dy, w, spec, None)
    if not short_sums(spec.og, spec) or not _one_dtype(spec):
        return _eigen_dx(dy, w, spec)
    return _correlated_dy(_cropped_elementwise_y, dy, w, spec)


def _grouped_dw(x: Array, dy: Array, spec: ConvSpec, kernel_sharding: Any) -> Array:
    """dw: jconv/_method_depthwise.py's scans (`grouped_dw`) on kernels up to SCAN_MAX_TAPS
    taps and up to SCAN_MAX_OUTPUTS outputs a group where 'taps''s GEMMs would copy at
    least SCAN_MIN_WINDOW_BYTES of windows (kh * kw copies of x), else `_eigen_dw`."""
    taps = spec.kh * spec.kw
    windows = taps * x.size * np.dtype(spec.acc_dtype).itemsize
    if (
        spec.groups == 1
        or taps > SCAN_MAX_TAPS
        or spec.og > SCAN_MAX_OUTPUTS
        or windows < SCAN_MIN_WINDOW_BYTES
    ):
        return _eigen_dw(x, dy, spec, kernel_sharding)
    return grouped_dw(x, dy, spec, kernel_sharding)


def _eigen_dw(x: Array, dy: Array, spec: ConvSpec, kernel_sharding: Any) -> Array:
    """dw: without groups lax's transpose of its own convolution (YNNPACK's, the faster
    here); with groups 'taps''s, a GEMM per tap contracting the batch and the pixels."""
    if spec.groups > 1:
        return member(TAPS, "dw", x, dy, spec, kernel_sharding)
    return transpose_in_w(conv_xla, x, dy, spec, kernel_sharding)


# Neither lax's results nor 'taps''s need a finiteness check: nothing is mixed before it
# is multiplied.
XLA_EIGEN = Lowering("xla_eigen", eigen_y, _eigen_dx, _eigen_dw, guarded=frozenset())
# Grouped convolutions with a few channels per group on small images: 'taps''s forward pass
# with XLA_EIGEN's gradients (jconv/_auto.py). The forward pass is checked as method='taps'
# checks it: needless for its numerics, but the program XLA fused without the check ran
# that forward pass 3x slower on one of the shapes measured (BENCHMARKS.md, session 14).
TAPS_EIGEN_GRADIENTS = Lowering(
    "taps_eigen_gradients", TAPS.y, _eigen_dx, _eigen_dw, guarded=frozenset({"y"})
)


# Grouped convolutions with a few channels per group (ResNeXt's 32 groups of 8): the
# forward pass and the input gradient as elementwise sums, C/groups (O/groups for the
# input gradient) multiply-adds per tap and output vectorized over the channels, where a
# GEMM per group would contract 8 values and lax's grouped convolution ran at 8 to 10
# GFLOP/s; the kernel gradient by the depthwise layers' scan, one input channel of each
# group at a time, or on small problems XLA_EIGEN's ('taps''s GEMMs contracting the batch
# and the pixels). jconv/_auto.py's `_grouped_choice` says where (BENCHMARKS.md, session 17).
GROUPED_ELEMENTWISE = Lowering(
    "grouped_elementwise", elementwise_y, _elementwise_dx, _grouped_dw, guarded=frozenset()
)


# The sub-pixel phases of bfloat16 transposed layers with 2x2 phase kernels (DCGAN's 4x4
# stride-2 up-sampling): 'winograd''s forward pass with these gradients (jconv/_auto.py,
# `choose_phase_method`). Groups (vmapped kernels) run TAPS_EIGEN_GRADIENTS, as 'winograd'
# runs 'taps'.
WINOGRAD_EIGEN_GRADIENTS = Lowering(
    "winograd_eigen_gradients",
    WINOGRAD.y,
    _eigen_dx,
    _eigen_dw,
    grouped=TAPS_EIGEN_GRADIENTS,
    guarded=frozenset({"y"}),
)


def conv_xla_eigen(x: Array, w: Array, spec: ConvSpec) -> Array:
    """x: batched, spec.layout; w: (O, C/groups, kh, kw) -> batched output, spec.layout:
    lax's convolution on XLA:CPU's own kernel (XLA_EIGEN), through jconv's primitive."""
    return lowered_conv(x, w, spec, XLA_EIGEN)


def conv_taps_eigen_gradients(x: Array, w: Array, spec: ConvSpec) -> Array:
    """x: batched, spec.layout; w: (O, C/groups, kh, kw) -> batched output, spec.layout:
    'taps''s forward pass with XLA_EIGEN's gradients (TAPS_EIGEN_GRADIENTS)."""
    return lowered_conv(x, w, spec, TAPS_EIGEN_GRADIENTS)


def conv_grouped_elementwise(x: Array, w: Array, spec: ConvSpec) -> Array:
    """x: batched, spec.layout; w: (O, C/groups, kh, kw) -> batched output, spec.layout:
    the forward pass and the input gradient as elementwise sums, the kernel gradient by
    the depthwise scans or XLA_EIGEN's (GROUPED_ELEMENTWISE)."""
    return lowered_conv(x, w, spec, GROUPED_ELEMENTWISE)


def conv_winograd_eigen_gradients(x: Array, w: Array, spec: ConvSpec) -> Array:
    """x: batched, spec.layout; w: (O, C/groups, kh, kw) -> batched output, spec.layout:
    'winograd''s forward pass with XLA_EIGEN's gradients (WINOGRAD_EIGEN_GRADIENTS); where
    'winograd' runs 'taps' (`winograd_supported`), 'taps''s forward pass with them."""
    if not winograd_supported(spec):
        return conv_taps_eigen_gradients(x, w, spec)
    return lowered_conv(x, w, spec, WINOGRAD_EIGEN_GRADIENTS)
