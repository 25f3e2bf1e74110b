"""method='auto': pick a lowering for a problem, per platform, from measured rules.

'auto' runs the rule of the platform its computation is lowered for (jconv/_conv2d.py
dispatches with jax.lax.platform_dependent), never of the machine's default backend:
a program exported for several platforms, or arrays on the CPU of a GPU machine,
each get their own. The rules come from experiments/bench_conv.py, forward and
forward-plus-backward together, since 'auto' cannot know whether its result will
be differentiated.

CPU (`choose_method`; a 2-core Intel Xeon with AVX-512 and AMX, BENCHMARKS.md): one
of jconv's own lowerings where it ran faster than lax, else 'xla' (issue #16: 'auto'
at least as fast as lax, in every dtype, on shapes beyond the bench suite too).

- depthwise (one input channel per group): 'taps', whose per-tap products are
  elementwise there (jconv/_method_depthwise.py): a multiply-add per tap, no
  matrix product to waste (lax's CPU depthwise convolution is about 50x slower
  forward), and a kernel gradient that holds one window at a time ('vmap', the
  same forward, ran its gradients 5x slower);
- few input channels (C/groups * kh * kw <= 256): 'banded', one GEMM whose extra
  multiply-adds (the band's zeros, `banded_overhead`) cost less than the many
  shallow GEMMs of the other lowerings, where it won: at most BANDED_MAX_CHANNELS
  input channels (LeNet's 1 and 6, a 3-channel first layer), stride 1, and few
  enough block windows to slice one by one, or, on wider images, up to 3 input
  channels and 32 outputs (where lax ran at 5 to 20 GFLOP/s: `_banded_wins`).
  The members are chosen one by one (`_banded_choice`): where lax's forward pass
  won but the band's gradients did (3x3 kernels on 4 to 8 channels, or with 64
  outputs, or on 1 channel; 1.1x to 1.5x lax forward+backward), lax's forward
  pass with the band's gradients (BANDED_GRADIENTS, a lowering only this rule
  picks). On one input channel (not float16), with few outputs times taps, and on 2
  or 3 channels with at most 32 outputs and a 3x3 kernel, the forward pass is
  'taps''s elementwise one, faster than both (TAPS_BANDED_GRADIENTS, likewise
  rule-only; LeNet's first layer 2.6x the band's forward, a 3-channel first layer
  1.4x to 1.7x); on 2 or 3 channels at any stride (MobileNet's 3 -> 32 stride-2
  stem: 3.8x lax forward, 1.3x with the gradient), and on one channel at any stride
  likewise. Strided 5x5 and larger kernels on a handful of channels take lax's
  forward pass with the band's gradients (ResNet's 7x7 stride-2 stem 1.2x to 1.6x
  lax with the gradient). These last rules were measured on a 2-core AMD EPYC
  (session 13), the others on the Xeon. Elsewhere in this class lax won: CIFAR's
  16-channel 3x3 layers (banded 0.14x to 0.3x lax), 16 channels on wide images, 8
  channels on wide images;
- stride-1 kernels up to 5x5 with at least WINOGRAD_MIN_CHANNELS input channels and
  WINOGRAD_MIN_OUTPUTS outputs (32 outputs on fewer than 64 float32 channels, and on
  fewer than 64 channels at most WINOGRAD_SHALLOW_MAX_BYTES of transformed outputs;
  `_winograd_wins`: ResNet's 3x3 layers, the lesson's 5x5 layer): 'winograd', which
  does 4/9 (3x3) or 9/25 (5x5) of the multiply-adds; 5x5 kernels in float32 and
  bfloat16 WINOGRAD_1D, a lowering only this rule picks: Winograd along the width,
  lax's convolution down the columns (jconv/_method_winograd_1d.py;
  `_width_transform_wins`);
- 1x1 kernels: 'taps', one GEMM; strided kernels up to 3x3 in bfloat16 and float16:
  'taps' (kh*kw GEMMs, computed in float32; the stride-2 3x3 layer 1.04x / 1.21x lax's
  bfloat16; 5x5 and 7x7 lost forward), and in float32 on kernels up to 3x3
  contracting at least 64 channels (`_strided_taps_win`: 1.0x to 1.5x lax both ways
  on a quiet machine); other
  strided float32 kernels lax (32 channels, 5x5: 'taps' lost forward);
- grouped convolutions (not depthwise): with few channels per group (C/groups * kh * kw
  up to 100 in float32, ResNeXt's 8 of 3x3 among them; up to 4 channels and 6 outputs
  a group in bfloat16 and float16) GROUPED_ELEMENTWISE, a lowering only this rule
  picks: the forward pass and the input gradient as elementwise sums vectorized over
  the channels, as on depthwise layers (ResNeXt's layer 2.1x to 2.2x both ways, against
  XLA_EIGEN; `_grouped_elementwise_wins`); else XLA_EIGEN below, with 'taps''s forward
  pass on up to 4 channels per group on small images (TAPS_EIGEN_GRADIENTS), strided
  ones 'taps' (lax's grouped kernel gradient took 13x to 51x as long as 'taps''s;
  `_grouped_choice`);
- everything else (dilation, shallow layers that 'banded' does not take): lax's
  convolution ('taps' ran 0.5x to 0.7x lax on a dilated 3x3), in float32 with 16 to
  128 channels on images up to 64x64 mostly as XLA_EIGEN, a lowering only this rule
  picks: the same convolution steered off YNNPACK, which XLA:CPU gives it to and which
  ran it on one of the two cores, onto XLA's own kernel (jconv/_method_xla_eigen.py;
  1.1x to 1.9x lax forward, 1.2x to 1.8x with the gradient inside `_eigen_wins`,
  session 14, AMD EPYC); elsewhere 'xla'.
'im2col' is never the fastest on a CPU in the suite and needs kh*kw copies of
the input; it stays available by name. On bfloat16 and float16 inputs 'banded'
and 'taps' (but a 1x1 'taps') compute in float32 (`cpu_compute_dtype`): chosen on
the CPU's branch only, so accelerators keep their bfloat16 GEMMs.

GPUs (CUDA, ROCm) and TPUs (`choose_accelerator_method`): 'xla', which is cuDNN
(or the TPU's convolution unit) there, unless one of jconv's lowerings is measured
faster than lax in both directions, or clearly faster overall, and within 1.5x
lax's peak memory (the compiled program's memory analysis) in both. On an NVIDIA
H100 (jax 0.11.2, bfloat16, NHWC, the suite's GPU batch sizes; the whole table in
BENCHMARKS.md; timed by the host's clock, which on the smallest of these layers also
measures the host's dispatch, see BENCHMARKS.md's session 6), the best of jconv's
lowerings on each layer of the suite, against lax, forward / forward-plus-backward,
speed and peak memory:

- the lesson's 5x5 layer, ResNet's 3x3 layers at 56, 28, 14 and 7 pixels:
  'winograd' or 'taps', 0.09x to 0.29x the speed at 4x to 12x the memory;
- the stride-2 3x3 layer: 'taps', 0.19x / 0.24x at 4.2x / 3.3x;
- depthwise 3x3: 'vmap' 0.38x / 0.41x, 'taps' 0.40x / 0.35x;
- LeNet's second layer: 'banded' 0.57x / 1.20x at 2.7x / 2.0x the memory;
- LeNet's first layer: 'taps' 2.33x forward but 0.58x with its gradient;
  'banded' 1.18x / 2.72x, but at 3.2x lax's memory forward (1.44x with the gradient);
- the 1x1 layer: 'taps' 1.23x forward, 0.95x with its gradient, the same memory.

None of these lowerings passes on any layer. jconv's GPU kernel, 'pallas', does
on some shape classes, measured on an NVIDIA H200 by the GPU's own kernel times:
`choose_accelerator_method` says which, with the measurements; everything else runs
'xla'. ROCm and TPUs
were not timed: they run 'xla', lax being their vendor's convolution too.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from jconv._checks import ConvSpec
from jconv._method_banded import BANDED_GRADIENTS as BANDED_GRADIENTS_LOWERING
from jconv._method_banded import (
    MAX_BLOCK_SLICES,
    banded_overhead,
    banded_unrolled,
    banded_weight_bytes,
)
from jconv._method_banded import TAPS_BANDED_GRADIENTS as TAPS_BANDED_GRADIENTS_LOWERING
from jconv._method_winograd import transformed_output_bytes, winograd_supported
from jconv._method_winograd_1d import WINOGRAD_1D as WINOGRAD_1D_LOWERING
from jconv._method_xla_eigen import GROUPED_ELEMENTWISE as GROUPED_ELEMENTWISE_LOWERING
from jconv._method_xla_eigen import TAPS_EIGEN_GRADIENTS as TAPS_EIGEN_GRADIENTS_LOWERING
from jconv._method_xla_eigen import (
    WINOGRAD_EIGEN_GRADIENTS as WINOGRAD_EIGEN_GRADIENTS_LOWERING,
)
from jconv._method_xla_eigen import XLA_EIGEN as XLA_EIGEN_LOWERING
from jconv._method_xla_eigen import extension, short_sums
from jconv._pallas_tuning import MIN_DOT

BANDED_MAX_CONTRACTION = 256  # C/groups * kh * kw: the direct GEMMs' depth is this small
BANDED_MAX_CHANNELS = 8  # C/groups: with more, lax's own convolution won (CIFAR's 16)
BANDED_MAX_OVERHEAD = 3.0  # at most this many times the convolution's multiply-adds
BANDED_MAX_WEIGHT_BYTES = 32 * 2**20  # and a banded weight matrix of at most this size
BANDED_SHIFT_MAX_CHANNELS = 3  # C/groups where windows cut by shift beat lax (RGB, gray)
BANDED_SHIFT_MAX_OUTPUTS = 32  # O/groups, likewise
BANDED_SHIFT_MIN_CONTRACTION = 16  # C/groups * kh * kw: 1 -> 32 3x3 (9) ran lax 3x faster
WINOGRAD_MIN_CHANNELS = 32  # C: below, the GEMMs are too shallow to pay for the transforms
WINOGRAD_MIN_OUTPUTS = 16  # O: below, too narrow to pay for transforming C channels
WINOGRAD_SHALLOW_CHANNELS = 64  # C: below, float32 needs WINOGRAD_SHALLOW_MIN_OUTPUTS
WINOGRAD_SHALLOW_MIN_OUTPUTS = 32  # O: with 16 and 24 on 32 channels, lax's forward won
# fewer than 64 channels: at most this many bytes of transformed outputs (2-D 'winograd')
WINOGRAD_SHALLOW_MAX_BYTES = 8 * 2**20
BANDED_FORWARD_MIN_TAPS = 25  # kh * kw: 5x5 kernels' bands won forward at any channel count
BANDED_GRADIENTS_MAX_CHANNELS = 4  # C/groups: windows cut by shift, band's gradients won
# lax's forward pass with 'banded''s gradients: a lowering only the rule picks (not a method)
BANDED_GRADIENTS = BANDED_GRADIENTS_LOWERING.name
# one to three input channels: 'taps''s elementwise forward pass with 'banded''s gradients
# (likewise)
TAPS_BANDED_GRADIENTS = TAPS_BANDED_GRADIENTS_LOWERING.name
SINGLE_CHANNEL_MAX_PRODUCTS = 640  # O * kh * kw: the elementwise products per input pixel
FEW_CHANNELS_MAX_TAPS = 9  # kh * kw: 2 or 3 channels, 3x3 kernels: 'taps''s forward pass
STRIDED_BAND_GRADIENTS_MIN_TAPS = 25  # kh * kw: strided 5x5 and up, the band's gradients
# lax's convolution kept on XLA:CPU's own kernel, with 'taps''s kernel gradient on groups
# (jconv/_method_xla_eigen.py): a lowering only the rule picks
XLA_EIGEN = XLA_EIGEN_LOWERING.name
YNNPACK_MIN_CHANNELS = 17  # max(C, O): XLA:CPU hands YNNPACK float32 convolutions from here
EIGEN_MAX_PIXELS = 64 * 64  # H * W; on 64x256 images YNNPACK used both cores, or tied
EIGEN_MIN_CHANNELS_3X3 = 32  # C, kernels up to 3x3: with 16, lost with the gradient
EIGEN_MIN_OUTPUTS_3X3 = 32  # O, likewise: with 16, a tie
EIGEN_MAX_OUTPUTS = 128  # O, kernels up to 3x3
EIGEN_MIN_CHANNELS = 16  # C, 5x5 and up: with 8, lost with the gradient (0.7x to 1.0x)
EIGEN_MAX_OUTPUTS_LARGE = 64  # O, 5x5 and up: with 128, YNNPACK ran on both cores (a tie)
EIGEN_MIN_OUTPUTS_LARGE = 16  # O, 5x5 and up: with 4 and 8, 0.33x to 0.9x lax forward
# grouped: 'taps''s forward pass with XLA_EIGEN's gradients (likewise rule-only)
TAPS_EIGEN_GRADIENTS = TAPS_EIGEN_GRADIENTS_LOWERING.name
# grouped, a few channels a group: elementwise forward pass and input gradient (likewise)
GROUPED_ELEMENTWISE = GROUPED_ELEMENTWISE_LOWERING.name
# bfloat16 sub-pixel phases: 'winograd''s forward pass with XLA_EIGEN's gradients (likewise)
WINOGRAD_EIGEN_GRADIENTS = WINOGRAD_EIGEN_GRADIENTS_LOWERING.name
GROUPED_TAPS_MAX_CHANNELS = 4  # C/groups: 'taps''s forward won with 4, lost with 8 and 16
GROUPED_TAPS_MAX_PIXELS = 28 * 28  # H * W: at 56x56 XLA_EIGEN's forward won (1.4x)
# Winograd along the width, lax's convolution down the columns (likewise rule-only)
WINOGRAD_1D = WINOGRAD_1D_LOWERING.name


def _banded_class(spec: ConvSpec) -> bool:
    """Shapes the band can run well: a handful of input channels, no dilation, few wasted
    multiply-adds and a banded matrix of bounded size. Its gradients take any stride; its
    forward pass runs at stride 1 only (`_banded_choice`)."""
    return (
        spec.cg <= BANDED_MAX_CHANNELS
        and spec.dilation == (1, 1)
        and banded_overhead(spec) <= BANDED_MAX_OVERHEAD
        and banded_weight_bytes(spec) <= BANDED_MAX_WEIGHT_BYTES
    )


def _banded_forward_wins(spec: ConvSpec) -> bool:
    """Where the band's forward pass ran faster than lax's: kernels of 5x5 and up (LeNet's
    layers, 6 -> 48 channels at 14x14: 1.2x to 3.8x), and smaller kernels on at most 3
    input channels and 32 outputs with a contraction of at least 16 (3 -> 16 and 3 -> 32
    3x3: 1.7x to 3.1x). With more channels or outputs, or 1 -> 32 3x3, lax's forward won
    (0.64x to 0.88x: 8 -> 32 at 16x16, 4 -> 64 at 28x28, 3 -> 64 at 224x224, 4 -> 32 at
    64x256; BENCHMARKS.md, session 5)."""
    return spec.kh * spec.kw >= BANDED_FORWARD_MIN_TAPS or _rgb_like(spec)


def _rgb_like(spec: ConvSpec) -> bool:
    """At most BANDED_SHIFT_MAX_CHANNELS input channels and BANDED_SHIFT_MAX_OUTPUTS
    outputs per group, contracting at least BANDED_SHIFT_MIN_CONTRACTION values: where
    lax's CPU convolution ran at 5 to 20 GFLOP/s and the band won both ways."""
    return (
        spec.cg <= BANDED_SHIFT_MAX_CHANNELS
        and spec.og <= BANDED_SHIFT_MAX_OUTPUTS
        and spec.cg * spec.kh * spec.kw >= BANDED_SHIFT_MIN_CONTRACTION
    )


def _banded_choice(spec: ConvSpec) -> str:
    """'banded', BANDED_GRADIENTS (lax's forward pass, the band's gradients),
    TAPS_BANDED_GRADIENTS ('taps''s elementwise forward pass, the band's gradients) or
    'xla' for a shape with a shallow contraction (C/groups * kh * kw <=
    BANDED_MAX_CONTRACTION).

    The band's gradients beat lax's across the class (1.1x to 1.5x forward+backward
    where its forward lost), but its forward pass does not: a convolution's members
    are chosen one by one, lax's forward where it is faster, and on one to three input
    channels 'taps''s elementwise forward pass where that is (TAPS_BANDED_GRADIENTS).
    """
    if not _banded_class(spec):
        return _lax_choice(spec)
    if _single_channel_forward_wins(spec) or _few_channel_forward_wins(spec):
        return TAPS_BANDED_GRADIENTS  # its gradients: the band's, as in the rest of the class
    if spec.stride != (1, 1):  # the band's forward pass runs at stride 1 only
        return BANDED_GRADIENTS if _strided_band_gradients_win(spec) else _lax_choice(spec)
    if _banded_wins(spec):
        return "banded" if _banded_forward_wins(spec) else BANDED_GRADIENTS
    if spec.cg <= BANDED_GRADIENTS_MAX_CHANNELS:
        return BANDED_GRADIENTS
    return _lax_choice(spec)


def _strided_band_gradients_win(spec: ConvSpec) -> bool:
    """A strided kernel of STRIDED_BAND_GRADIENTS_MIN_TAPS taps and up in the band's class:
    where lax's forward pass with the band's gradients ran faster than lax. Measured
    (session 13, AMD EPYC, float32 / bfloat16, forward+backward): ResNet's 7x7 stride-2
    stem (3 -> 64 at 224x224) 1.56x / 1.25x (lax's input gradient there: 16 ms, the
    band's 6.9), at 112x112 1.19x, 3 -> 32 5x5 stride 2 1.27x / 1.08x, 1 -> 32 7x7 1.87x /
    2.21x, 4 -> 48 5x5 1.18x / 1.08x; on a 3x3 kernel (3 -> 64 stride 2) 0.95x."""
    return spec.kh * spec.kw >= STRIDED_BAND_GRADIENTS_MIN_TAPS


def _single_channel_forward_wins(spec: ConvSpec) -> bool:
    """One input channel in bfloat16, float32 or wider, at most SINGLE_CHANNEL_MAX_PRODUCTS outputs
    times taps: where 'taps''s elementwise forward pass (a multiply-add per tap and output
    channel, no GEMM) ran faster than the band's and lax's. Measured, float32 NHWC,
    against the band / lax: LeNet's 1 -> 6 5x5 at 28x28 (150 products) 2.1x / 5.9x,
    1 -> 16 3x3 and 5x5 1.4x to 1.8x / 2.7x to 3.3x, 1 -> 32 3x3 3.3x / 2.1x, 1 -> 8
    3x3 at 128x128 4.9x / 17x, 1 -> 64 3x3 (576) 1.8x / 1.7x, 1 -> 32 5x5 (800) 1.35x /
    1.27x; it lost on 1 -> 16 7x7 (784, 0.8x the band's), 1 -> 64 5x5 (1600, 0.57x
    lax's) and 1 -> 64 7x7 (0.4x): the bound sits below them all. With the gradient it
    costs a little: the band's forward pass shares its stacked input with its kernel
    gradient, this one does not (LeNet's first layer 0.86x to 0.94x the band's forward
    plus backward, against 2.6x forward). In bfloat16, once its result was rounded by
    jconv/_rounding.py (XLA's fused convert had made it 4x slower), 1.4x to 1.5x the
    band's forward on LeNet's layer and 1.01x to 1.21x with the gradient (two runs);
    float16 was not measured and keeps the rule above. BENCHMARKS.md, session 8. At
    strides too, where lax ran (session 13, AMD EPYC, against lax, forward /
    forward+backward, float32 and bfloat16 alike within the runs' spread): 1 -> 32 3x3
    stride 2 at 128x128 1.36x to 2.12x / 1.43x to 1.51x, 1 -> 16 5x5 3.49x to 3.57x /
    1.73x to 1.84x, 1 -> 64 3x3 1.98x to 2.87x / 1.11x to 1.53x."""
    return (
        spec.c == 1
        and jnp.dtype(spec.dtype) != jnp.float16
        and spec.o * spec.kh * spec.kw <= SINGLE_CHANNEL_MAX_PRODUCTS
    )


def _few_channel_forward_wins(spec: ConvSpec) -> bool:
    """2 or 3 input channels and at most 32 outputs (`_rgb_like`), kernels up to
    FEW_CHANNELS_MAX_TAPS taps, bfloat16 or float32: where 'taps''s elementwise forward
    pass (each tap's window times each input channel's weights, cg * kh * kw multiply-adds
    per output, vectorized over the outputs) ran faster than the band's. Measured
    (session 13, AMD EPYC, float32 NHWC, two runs each, interleaved in one process),
    against 'banded' forward / forward+backward: 3 -> 32 at 112x112 1.57x to 1.66x / 1.04x to
    1.07x, CIFAR's 3 -> 16 1.36x to 1.58x / 1.02x to 1.03x, 3 -> 8 at 128x128 2.2x to
    2.4x / 1.06x to 1.12x, 2 -> 32 at 64x64 1.7x to 3.6x / 1.17x to 1.22x, 3 -> 32 at 32x32
    (N=64) 1.27x to 1.71x / 0.93x to 0.96x; in bfloat16 1.2x to 2.0x / 0.96x to 2.56x (the
    band's 3 -> 32 at 32x32 ran slower than lax there). It lost on 5x5 and 7x7 kernels
    (3 -> 24 5x5 0.58x, 2 -> 16 5x5 0.72x, 3 -> 32 7x7 0.39x to 0.66x forward: the band's
    GEMM gains with the taps), and with 64 outputs, where lax's forward pass runs (3 -> 64
    at 224x224: 1.6x to 2.0x lax's forward but 0.66x to 0.76x with the gradient, its
    forward's temporaries over glibc's mmap threshold). float16 was not measured.
    Strided, where the band does not run forward and lax did ('banded''s gradients take
    strides), against lax: MobileNet's stem, 3 -> 32 3x3 stride 2 at 224x224, 3.75x to
    3.84x / 1.28x to 1.37x (bfloat16 3.25x / 1.42x), 3 -> 16 stride 2 at 112x112 2.52x /
    1.82x (2.60x / 1.78x), 2 -> 32 stride 2 at 64x64 1.14x / 1.31x (1.49x / 1.29x), 3 ->
    24 stride 3 10x / 2.4x; the 7x7 stride-2 stem (3 -> 64) lost forward (0.43x)."""
    return (
        _rgb_like(spec)
        and spec.kh * spec.kw <= FEW_CHANNELS_MAX_TAPS
        and jnp.dtype(spec.dtype) != jnp.float16
    )


def _banded_wins(spec: ConvSpec) -> bool:
    """Where 'banded' (in its class) ran faster than lax on a CPU: its windows sliced one
    by one (kh * blocks up to MAX_BLOCK_SLICES), or cut by shift on wide images where
    `_rgb_like` (3 -> 32 at 112x112, 1 -> 16 5x5 at 128x128, 3 -> 24 5x5 at 56x56:
    'banded' 1.4x to 8.9x lax; with 64 outputs, 4 or 8 channels, or a contraction of 9
    (1 -> 32 3x3), lax won forward; BENCHMARKS.md)."""
    return banded_unrolled(spec) <= MAX_BLOCK_SLICES or _rgb_like(spec)


STRIDED_TAPS_MIN_CHANNELS = 64  # C/groups: each tap's GEMM contracts at least this many
STRIDED_TAPS_MAX_TAPS = 9  # kh * kw: 3x3 kernels and smaller


def _narrow(spec: ConvSpec) -> bool:
    """bfloat16 or float16 inputs, which the CPU's elementwise lowerings compute in float32
    (`cpu_compute_dtype`)."""
    return jnp.dtype(spec.dtype).itemsize < 4


def _strided_taps_win(spec: ConvSpec) -> bool:
    """Strided kernels up to 3x3: in bfloat16 and float16 (computed in float32) all of them,
    in float32 those contracting at least 64 channels per tap: where 'taps' (a GEMM per
    tap on strided windows) ran at least as fast as lax both ways.

    bfloat16, 5x5 and 7x7 kernels (session 18, AMD EPYC, NHWC, against lax interleaved
    in one process, `grid_strided_bf16.txt`, `grid_strided_5x5_bf16.txt`): 7x7 forward
    0.10x to 0.83x lax on 11 of 12 layers of 24 to 256 channels (3 to 192 outputs), with
    the gradient 0.58x to 1.19x; 5x5 forward 0.45x to 1.59x, with the gradient 0.79x to
    1.16x. They run lax. The 3x3 ones were mixed there too: 0.71x to 1.68x forward, 0.96x
    to 2.05x with the gradient (a loss on few outputs from 256 channels, 0.71x forward).

    Measured (session 8, quiet, float32 NHWC, 3x3 stride 2 unless said, medians of
    three alternating runs), 'taps' against lax forward / forward+backward: 64 -> 128
    at 56x56 1.23x to 1.51x / 1.19x to 1.32x (four runs), 128 -> 256 at 28x28 1.11x /
    1.39x, 256 -> 512 at 14x14 1.00x / 1.29x, 64 -> 64 at 112x112 1.26x / 1.52x, stride
    3 1.40x / 1.17x. It lost with 32 channels (0.79x forward) and on 5x5 (0.91x /
    0.59x). An earlier run on a loaded machine had the 56x56 layer at 0.42x to 0.64x
    forward (BENCHMARKS.md); the rule follows the quiet runs.
    """
    deep = spec.groups == 1 and spec.cg >= STRIDED_TAPS_MIN_CHANNELS
    return (_narrow(spec) or deep) and spec.kh * spec.kw <= STRIDED_TAPS_MAX_TAPS


def _eigen_wins(spec: ConvSpec) -> bool:
    """Where lax's convolution without groups ran faster on XLA:CPU's own kernel than on
    YNNPACK's, with its gradients (XLA_EIGEN, jconv/_method_xla_eigen.py; grouped ones:
    `_grouped_choice`).

    Float32 convolutions that XLA gives YNNPACK, steered for at most 1/8 more
    outputs, on images up to EIGEN_MAX_PIXELS: 3x3 kernels (dilated too) from at least
    EIGEN_MIN_CHANNELS_3X3 input channels to EIGEN_MIN_OUTPUTS_3X3 to EIGEN_MAX_OUTPUTS
    outputs, larger kernels from at least EIGEN_MIN_CHANNELS to EIGEN_MIN_OUTPUTS_LARGE to
    EIGEN_MAX_OUTPUTS_LARGE outputs (with 4 and 8 outputs from 32 to 256 channels on 5x5
    kernels, 0.33x to 0.9x lax forward: session 18, `grid_winograd_outputs.txt`).

    Measured (session 14, AMD EPYC, 2 cores, float32 NHWC, lax against this lowering
    interleaved in one process): 80 shapes drawn from those 'auto' ran by lax and 10
    more with the loss chained to y (a training step's order), 15 with bench_conv.py's
    loss (a fixed cotangent, so that y, dx and dw may run side by side). Inside the
    rule 1.1x to 1.9x forward and 1.2x to 1.8x with the gradient (the bench's dilated
    layer 1.47x / 1.40x), ties at worst (0.95x). Where lax's YNNPACK convolutions ran on
    one core each, three of them side by side (the bench's loss) used both, and the
    rule's bounds come from there: 16 input channels with 3x3 kernels won forward (1.1x to
    1.6x) but lost with the gradient (0.89x to 0.95x; the bench's wide16, 16 -> 64 on
    64x256, 1.51x / 0.93x), and 16 outputs tied (0.95x to 1.17x). Outside it also: 5x5
    and 7x7 kernels or 128 channels on 64x256 images (0.57x to 0.83x forward: YNNPACK at
    twice its one-core speed), 5x5 and 7x7 kernels to 128 outputs (0.98x to 1.00x), 8
    input channels with the gradient (0.69x to 1.0x)."""
    if (
        jnp.dtype(spec.dtype) != jnp.float32
        or max(spec.c, spec.o) < YNNPACK_MIN_CHANNELS
        or spec.height * spec.width > EIGEN_MAX_PIXELS
        or extension(spec) is None
    ):
        return False
    if spec.kh * spec.kw <= 9:
        return (
            spec.c >= EIGEN_MIN_CHANNELS_3X3
            and EIGEN_MIN_OUTPUTS_3X3 <= spec.o <= EIGEN_MAX_OUTPUTS
        )
    outputs = EIGEN_MIN_OUTPUTS_LARGE <= spec.o <= EIGEN_MAX_OUTPUTS_LARGE
    return spec.c >= EIGEN_MIN_CHANNELS and outputs


# bfloat16 and float16 (computed in float32)
GROUPED_ELEMENTWISE_NARROW_MAX_CHANNELS = 4  # C/groups: with 8 it lost (0.83x to 0.95x)
GROUPED_ELEMENTWISE_NARROW_MAX_OUTPUTS = 6  # O/groups: in bfloat16 with 8 its forward lost (0.9x)


def _grouped_elementwise_wins(spec: ConvSpec) -> bool:
    """Grouped convolutions whose elementwise sums stay short: GROUPED_ELEMENTWISE (the
    forward pass and the input gradient as sums of C/groups and O/groups products per tap,
    vectorized over the channels; the kernel gradient by the depthwise scans on large
    images; jconv/_method_xla_eigen.py) where its forward pass takes at most
    ELEMENTWISE_MAX_TERMS products an output from at most ELEMENTWISE_MAX_CHANNELS
    channels a group; in bfloat16 and float16 (computed in
    float32, `cpu_compute_dtype`) on at most 4 channels and 6 outputs per group, at
    stride 1.

    Measured (session 17, AMD EPYC, 2 cores, NHWC, bench_conv.py's loss, interleaved in
    one process against what 'auto' ran before, XLA_EIGEN or TAPS_EIGEN_GRADIENTS, two
    processes), 3x3 kernels unless said, speed forward / forward+backward. float32:
    ResNeXt's 32 groups of 8 at 28x28 2.1x to 2.2x / 2.1x to 2.2x, at 56x56 2.1x to 2.4x /
    2.5x to 2.6x, at 14x14 1.9x to 2.4x / 1.2x to 1.3x; 4 channels a group 4.0x to 5.8x / 1.8x
    to 3.8x (128 -> 128 at 28x28, 48 -> 96 at 14x14), on 112x112 6.3x to 6.9x / 4.5x to 4.8x,
    with 5x5 kernels (100 products) 3.2x to 3.6x / 2.2x to 3.8x; 2 a group at 56x56 14x to
    16x / 11x; with 16 or 32 outputs a group (the input gradient then XLA_EIGEN's) 1.4x to
    1.6x / 1.1x to 1.2x (one process); strided (against 'taps', its input gradient
    'taps''s) 4.6x to 4.9x / 1.5x to 2.6x (one process); 7x7 kernels on 2 channels a group
    (98 products) 4.5x to 5.8x / 1.3x to 1.8x, compiled with the gradient in 1.7 to 2.2 s
    (TAPS_EIGEN_GRADIENTS, which 'auto' ran there, 4.2 to 4.9 s). Left to XLA_EIGEN: 10 and
    11 channels a group (90 and 99 products: forward a tie, the input gradient 2.4x
    slower), 12 (108, a tie), 16 (144: 0.16x / 0.34x) and 8 with 5x5 kernels (200: 0.19x /
    0.47x), where XLA's loop ran 5x to 6x slower. bfloat16, widened: 2 to 4
    channels and 4 to 6 outputs a group 1.2x to 6.1x / 2.2x to 9.3x, and with 5x5 kernels
    0.73x to 1.00x forward (against TAPS_EIGEN_GRADIENTS; 1.13x to 1.19x XLA_EIGEN's, lax's
    own) but 1.19x to 1.27x with the gradient, compiled in 1.0 to 1.4 s against 1.8 to 2.4.
    Not taken in bfloat16: 4 channels and 8 outputs (forward 0.90x to 0.94x), 8 channels
    (0.29x to 0.31x forward widened; in bfloat16 itself 1.0x to 2.1x forward but 0.97x to
    1.26x with the gradient), strides (not measured). float16 as bfloat16: against the rule
    below (TAPS_EIGEN_GRADIENTS or XLA_EIGEN), 1.3x to 6.8x forward and 2.1x to 9.5x with
    the gradient on 2 to 4 channels and 2 to 8 outputs a group, 8 channels 0.27x forward
    (two processes, `float16.txt`)."""
    if not short_sums(spec.cg, spec):
        return False
    if jnp.dtype(spec.dtype) == jnp.float32:
        return True
    if spec.stride != (1, 1):  # measured in float32 only
        return False
    return (
        _narrow(spec)
        and spec.cg <= GROUPED_ELEMENTWISE_NARROW_MAX_CHANNELS
        and spec.og <= GROUPED_ELEMENTWISE_NARROW_MAX_OUTPUTS
    )


def _grouped_choice(spec: ConvSpec) -> str:
    """A grouped convolution (not depthwise, which 'taps' runs): never lax's, whose grouped
    kernel gradient (a convolution with a batch group count, which XLA:CPU decomposes)
    took 13x to 51x as long as 'taps''s.

    Where the elementwise sums stay short, at any stride, GROUPED_ELEMENTWISE
    (`_grouped_elementwise_wins`, session 17). Elsewhere, where `extension` steers lax's
    forward pass off YNNPACK (whose grouped convolution is slow: float32 1.5x to 7.7x
    faster steered; bfloat16 1.6x to 2.1x), XLA_EIGEN: that forward pass and input
    gradient, 'taps''s kernel gradient; on up to GROUPED_TAPS_MAX_CHANNELS channels per
    group and images up to GROUPED_TAPS_MAX_PIXELS,
    'taps''s forward pass with the same gradients (TAPS_EIGEN_GRADIENTS): as built, against
    XLA_EIGEN with bench_conv.py's loss, two processes, 1.15x to 2.0x forward and 1.02x to
    1.44x with the gradient on 128 -> 128 in 32 groups, 64 -> 64 in 16 and 32 -> 64 in 8
    at 28x28, 48 -> 96 in 12 at 14x14, 16 -> 32 in 4 at 28x28 (1.3x to 2.2x lax forward);
    at 56x56 XLA_EIGEN's forward won (1.4x), and with 8 and 16 channels per group XLA_EIGEN
    won both ways. Strided (the extension would cost half the outputs or more): 'taps',
    which ran lax's forward speed (0.9x to 1.2x), its gradients 3.3x to 50x faster, and
    1.1x to 2.3x faster with the gradient than lax's forward pass with 'taps''s kernel
    gradient (3x3 stride 2, 2 to 32 groups). float16 was not measured. Session 14, AMD
    EPYC, float32 NHWC unless said."""
    if _grouped_elementwise_wins(spec):
        return GROUPED_ELEMENTWISE
    if extension(spec) is None:
        return "taps"
    if spec.cg <= GROUPED_TAPS_MAX_CHANNELS and spec.height * spec.width <= GROUPED_TAPS_MAX_PIXELS:
        return TAPS_EIGEN_GRADIENTS
    return XLA_EIGEN


def _lax_choice(spec: ConvSpec) -> str:
    """Where the rule would run lax's convolution: grouped ones by `_grouped_choice`; on
    XLA:CPU's own kernel where that won (`_eigen_wins`); else as lax runs it ('xla')."""
    if spec.groups > 1 and spec.cg > 1:
        return _grouped_choice(spec)
    return XLA_EIGEN if _eigen_wins(spec) else "xla"


def _width_transform_wins(spec: ConvSpec) -> bool:
    """WINOGRAD_1D over 'winograd' (which the rule picks otherwise): 5x5 kernels in float32
    and bfloat16.

    Measured (session 15, AMD EPYC, NHWC, bench_conv.py's loss, the two lowerings
    interleaved in one process, two processes). float32: forward 1.07x to 1.81x 'winograd'
    on six 5x5 layers (the lesson's 1.77x: 29 ms against 51, torch's 41); with the
    gradient 1.08x to 2.3x on three of them (the lesson's, 32 -> 64 at 56x56, 48 -> 96 at
    32x32), 0.96x to 1.14x on two (64 -> 64 at 28x28, 128 -> 128 at 14x14), 0.83x to 0.91x
    on 256 -> 256 at 16x16, where its kernel gradient (F(4, 5)'s 8 GEMMs over 5 row
    shifts) is the slower one. bfloat16 (its transforms and column convolutions in
    float32, 'winograd''s GEMMs in bfloat16): the lesson's 1.31x / 1.62x, 64 -> 64 and
    32 -> 64 1.3x to 1.8x forward and 1.03x to 1.67x with the gradient, but 128 -> 128 at
    14x14 0.93x / 0.77x and 256 -> 256 at 16x16 0.72x to 0.84x / 0.84x to 0.87x. Its
    first call compiled with the gradient in 1.1 to 2.05 s, against 'winograd''s 2.15 to
    4.4 in float32 and 3.4 to 5.2 in bfloat16, over the 2 s a first call may wait on
    every one of them: 'winograd''s 36 transformed positions each take their own XLA
    kernels (BENCHMARKS.md). So the rule takes the compile time and the losses on many
    channels on small images with it. On 3x3 kernels (F(4, 3) along the width against
    F(2x2, 3x3)) it lost with the gradient on all five ResNet-like layers tried (0.63x
    to 0.80x), and on 4x4 (0.88x, 0.98x); float16 was not measured.
    """
    measured = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16))
    return jnp.dtype(spec.dtype) in measured and spec.kh == spec.kw == 5


def _winograd_wins(spec: ConvSpec) -> bool:
    """'winograd' (or WINOGRAD_1D) over lax: stride-1 kernels up to 5x5 from at least
    WINOGRAD_MIN_CHANNELS input channels to at least WINOGRAD_MIN_OUTPUTS outputs, in
    float32 from fewer than WINOGRAD_SHALLOW_CHANNELS channels to at least
    WINOGRAD_SHALLOW_MIN_OUTPUTS.

    The transforms cost in proportion to C and O, the GEMMs they save in proportion to
    C * O: on few outputs the input's transforms cost more than they save. Measured
    (session 18, AMD EPYC, NHWC, against lax interleaved in one process, 30 layers of 32,
    64 and 256 channels on 32x32 to 14x14 images, 3x3 and 5x5, `grid_winograd_outputs.txt`),
    forward / forward+backward: 4 outputs 0.13x to 0.64x / 0.22x to 0.61x in float32, 0.48x
    to 1.01x / 0.30x to 0.60x in bfloat16; 8 outputs 0.34x to 0.92x forward in float32
    (5x5 with the gradient 0.47x to 0.95x), 0.61x to 1.39x / 0.55x to 1.23x in bfloat16; 16
    outputs 1.46x to 1.93x / 1.00x to 1.74x in bfloat16, 1.2x to 1.6x / 1.4x to 1.5x in
    float32 on 64 channels (on 256 at 14x14 scattered: 3x3 0.58x / 1.24x, 5x5 1.56x /
    0.91x), but on 32 float32 channels 0.45x / 0.83x with 3x3 kernels (24 outputs 0.71x
    forward there, and 0.77x / 0.89x on a 64x64 image, `sweep`) and 1.09x / 1.45x with 32
    (5x5 likewise: 16 outputs 1.04x / 0.92x, 24 outputs 2.3x / 1.5x). Drawn at random
    outside the bench's table (`sweep`), 3 and 8 outputs from 32 to 256 channels had run
    0.24x to 0.83x lax forward and 0.24x to 0.73x with the gradient.

    The size bound (2-D 'winograd'): on fewer than 64 input channels the GEMMs are shallow,
    and their results, one (N * tiles, O) product per transformed position
    (`transformed_output_bytes`), written and read once each, weigh more than the
    multiply-adds they save once they are large. Measured (session 18, AMD
    EPYC, NHWC, against lax interleaved in one process; `grid_winograd_64x64.txt`,
    `grid_winograd_batches.txt`), forward / forward+backward, float32: 32 channels with 16
    to 32 MiB of them 0.38x to 1.42x / 0.72x to 0.83x (32 -> 64 at 32x32, 32 images; 32 ->
    256 and 32 -> 512 at 64x64; 32 -> 512 at 32x32, 4 images), bfloat16 0.53x to 3.1x /
    0.68x to 0.78x; 48 -> 512 at 64x64 0.69x forward. At 8 MiB and below the grids' 32-
    and 48-channel layers won both ways (32 -> 512 at 32x32, one image, 8 MiB: 1.09x /
    1.25x), but 32 -> 384 at 14x14 (5.7 MiB) ran 0.78x to 0.81x forward in two processes.
    From 64 channels the step also tied or lost at 16 to 32 MiB (64 -> 64 at 56x56, 8
    images, 1.01x in float32 and 0.79x in bfloat16; 64 -> 512 at 64x64 0.61x forward)
    while the forward pass mostly won (1.2x to 2.9x at 24.5 MiB): not bounded
    (BENCHMARKS.md, session 18).
    """
    if not winograd_supported(spec) or spec.c < WINOGRAD_MIN_CHANNELS:
        return False
    shallow = spec.c < WINOGRAD_SHALLOW_CHANNELS
    too_big = transformed_output_bytes(spec) > WINOGRAD_SHALLOW_MAX_BYTES
    if shallow and too_big and not _width_transform_wins(spec):
        return False
    shallow_float32 = shallow and jnp.dtype(spec.dtype) == jnp.float32
    return spec.o >= (WINOGRAD_SHALLOW_MIN_OUTPUTS if shallow_float32 else WINOGRAD_MIN_OUTPUTS)


def choose_method(spec: ConvSpec) -> str:
    """The lowering that 'auto' runs for spec on a CPU (see the module docstring)."""
    if spec.cg == 1 and spec.groups > 1:  # depthwise: every product is elementwise
        return "taps"
    if spec.kh * spec.kw > 1 and spec.cg * spec.kh * spec.kw <= BANDED_MAX_CONTRACTION:
        return _banded_choice(spec)
    if _winograd_wins(spec):
        return WINOGRAD_1D if _width_transform_wins(spec) else "winograd"
    if spec.dilation == (1, 1) and spec.kh * spec.kw == 1:
        return "taps"
    if spec.dilation == (1, 1) and max(spec.stride) > 1 and _strided_taps_win(spec):
        return "taps"
    return _lax_choice(spec)


def cpu_compute_dtype(spec: ConvSpec, method: str) -> Any:
    """float32 where the CPU runs `method` on float16 or bfloat16 inputs in float32, else None.

    XLA's CPU backend runs bfloat16 matrix products fast (with AMX tiles where the CPU
    has them) but converts every elementwise bfloat16 operation to float32 and back:
    'banded' (its windows and band), 'taps' with more than one tap (a window and a
    sum per tap) and GROUPED_ELEMENTWISE (1.08x to 1.29x its bfloat16 form with the
    gradient, session 17) ran faster in float32 than in bfloat16. Not widened: a 1x1 'taps',
    one bfloat16 GEMM; 'winograd', which already transforms in float32 and keeps its
    GEMM operands in bfloat16; 'vmap' and 'taps' on one input channel per group, which
    compute in float32 themselves; and lax, whose convolution, fed by a conversion to
    float32, ran up to 20x slower with its gradients (BENCHMARKS.md). Nor
    BANDED_GRADIENTS: its forward pass is lax's own, in bfloat16 as lax runs it (widened,
    0.82x to 0.94x lax's forward on 3 -> 64 and 4 -> 32 to 64 channels, session 8), and the
    band's gradients accumulate in float32 whatever the input dtype (the input gradient's
    GEMM on bfloat16 operands: a float32 copy of dy cost more than it saved, session 12).
    """
    if not _narrow(spec):
        return None
    if method in ("banded", GROUPED_ELEMENTWISE) or (
        method == "taps" and spec.kh * spec.kw > 1 and spec.cg > 1
    ):
        return jnp.dtype(jnp.float32)
    return None


ACCELERATOR_PLATFORMS = ("cuda", "rocm", "tpu")  # as jax.lax.platform_dependent names them
PALLAS_PLATFORMS = ("cuda",)  # where 'pallas' lowers to Triton (elsewhere: interpret mode)
PALLAS_DTYPES = (jnp.dtype(jnp.bfloat16),)  # the one dtype timed on a card
PALLAS_MAX_PIXELS = 2**31  # the kernels index padded pixels with int32
CUDNN_CHANNEL_MULTIPLE = 8  # cuDNN's tensor-core convolutions pad channels to this multiple


def pallas_class(spec: ConvSpec) -> str | None:
    """The shape class in which 'pallas' was measured faster than lax that spec is in, or None.

    'few channels' (C < 16), 'unaligned channels' (C not a multiple of 8) or
    'strided', in that order; only bfloat16 NHWC convolutions without groups or
    dilation, as measured (see `choose_accelerator_method`).
    """
    hp, wp = spec.padded_hw
    if (
        jnp.dtype(spec.dtype) not in PALLAS_DTYPES
        or spec.layout != "NHWC"
        or spec.groups != 1
        or spec.dilation != (1, 1)
        or spec.n * hp * wp >= PALLAS_MAX_PIXELS
    ):
        return None
    if spec.c < MIN_DOT:
        return "few channels"
    if spec.c % CUDNN_CHANNEL_MULTIPLE:
        return "unaligned channels"
    if max(spec.stride) > 1:
        return "strided"
    return None


def choose_accelerator_method(spec: ConvSpec, platform: str) -> str:
    """The lowering that 'auto' runs for spec on a GPU or TPU (or any platform but the CPU).

    'pallas' on CUDA for the shape classes where it ran faster than lax in both
    directions, forward and forward-plus-backward, within lax's peak memory;
    'xla' everywhere else. Measured on an NVIDIA H200 (jax 0.11.2, Triton 3.6.0,
    2026-11-26, session 6; bfloat16, NHWC, the bench suite's GPU batch sizes,
    the tuned table of jconv/_pallas_tuning.py; BENCHMARKS.md has the table) by
    the GPU's own kernel times (a profiler trace: the host's dispatch of a call
    takes as long as these layers run), speed against lax forward /
    forward-plus-backward, and peak memory against lax's:

    - few input channels (C < 16, where the kernel contracts over (tap, channel)
      flattened): LeNet's 5x5 layers, 1 -> 6 channels 3.47x / 2.66x (memory 1.00x
      / 0.58x) and 6 -> 16 channels 3.35x / 2.13x (0.64x / 0.78x);
    - input channels not a multiple of 8, which cuDNN's tensor-core kernels pad
      first (its padding kernels took 150 of lax's 530 us on the lesson's
      layer): the lesson's 100 -> 100 channels 5x5, 1.26x / 1.10x (0.49x / 0.58x);
    - strided: 3x3 stride 2, 64 -> 128 channels, 56 -> 28 pixels, 1.91x / 1.40x
      (0.59x / 0.85x).

    Left to lax: stride-1 layers with aligned channels, where 'pallas' lost or
    tied at least one way (session 10, the same card and method): ResNet's 3x3 at
    56x56 0.93x / 1.03x, 28x28 0.94x / 1.13x, 14x14 0.93x / 0.86x, 7x7 0.76x /
    0.87x; 1x1 at 56x56 1.08x / 0.98x; depthwise 3x3 0.90x / 0.97x (groups in
    general); and what was not measured: float32 and float16
    ('pallas' was timed in bfloat16 only), the NCHW layout (a transpose on each
    side of the kernel), dilation. ROCm and TPUs have no Triton lowering of
    'pallas' here.

    A program that runs 'pallas' holds a Triton custom call: exporting it with
    jax.export for CUDA needs DisabledSafetyCheck.custom_call('__gpu$xla.gpu.triton').
    """
    if platform in PALLAS_PLATFORMS and pallas_class(spec) is not None:
        return "pallas"
    return "xla"


PHASES = "phases"  # each sub-pixel phase (jconv/_subpixel.py) by `choose_phase_method`
PHASE_EIGEN_MAX_TAPS = 4  # kh * kw of a phase kernel: up to 2x2, XLA_EIGEN over 'winograd'


def choose_phase_method(spec: ConvSpec) -> str:
    """The lowering 'auto' runs on a CPU for one sub-pixel phase of a transposed
    convolution (a plain spec): `choose_method`'s, except for float32 and bfloat16 phase
    kernels of at most 2x2 (a 4x4 stride-2 up-sampling's four phases, DCGAN's) that it
    would run by 'winograd': in float32 XLA_EIGEN, where `extension` steers it, in
    bfloat16 WINOGRAD_EIGEN_GRADIENTS.

    A transposed layer's phases are separate convolutions in one program, and
    'winograd''s three members emit one XLA kernel per transformed position each (9 for
    a 2x2 kernel), which XLA:CPU compiles at about 12 ms apiece: the four phases' forward
    pass and gradients took 2.0 to 2.9 s to compile, over the 2 s a first call may wait,
    against XLA_EIGEN's 0.4 to 0.55 s. With F(2, 2)'s 16/9 the least that Winograd saves,
    XLA_EIGEN also ran faster with the gradient on the four 4x4 stride-2 layers measured
    (512 -> 256 at 8x8, DCGAN's 256 -> 128 at 16x16, 128 -> 64 and 64 -> 32 at 32x32:
    1.05x to 2.07x, two processes, bench_conv.py's loss) and on two 3x3 stride-2 ones
    (1.22x to 1.56x); forward it won on two (1.07x to 1.57x), tied on 128 -> 64 (1.12x,
    0.91x) and lost on DCGAN's (0.75x to 0.81x). Plain 2x2
    convolutions keep 'winograd': one convolution compiles in about 1 s, and XLA_EIGEN
    lost with the gradient on two of four (0.68x to 0.78x; session 15, AMD EPYC, float32
    NHWC).

    bfloat16 phases of at most 2x2 that the plain rule runs by 'winograd' run
    WINOGRAD_EIGEN_GRADIENTS, 'winograd''s forward pass with XLA_EIGEN's gradients (lax's
    bfloat16 convolution, which YNNPACK never takes, so no extension is needed): there
    'winograd''s phases took 2.7 to 4.0 s to compile with the gradient, and XLA_EIGEN's
    forward pass, lax's bfloat16 one, ran 0.5x to 0.7x 'winograd''s on five of six layers
    (0.88x and 1.74x on the sixth). The pair compiled in 1.4 to 1.8 s on the four
    4x4 stride-2 layers and DCGAN's (on two 3x3 stride-2 ones 2.0 to 2.3 s, and 1.0 and
    1.8 s under 'auto' itself in a later run), forward as
    fast as 'winograd', with the gradient 1.02x to 2.04x 'winograd''s (0.82x and 1.17x on
    one 3x3 stride-2 layer, two processes; session 16). In float32 the pair lost with the
    gradient on DCGAN's layer (0.81x to 0.84x XLA_EIGEN): XLA_EIGEN there. float16: not
    measured, 'winograd'.
    """
    method = choose_method(spec)
    if method != "winograd" or spec.kh * spec.kw > PHASE_EIGEN_MAX_TAPS:
        return method
    dtype = jnp.dtype(spec.dtype)
    if dtype == jnp.float32 and extension(spec) is not None:
        return XLA_EIGEN
    if dtype == jnp.bfloat16:
        return WINOGRAD_EIGEN_GRADIENTS
    return method


def auto_methods_transposed(spec: ConvSpec) -> dict[str, str]:
    """'auto' for input dilation (transposed convolutions) or crops, per platform.

    On a CPU, PHASES: the sub-pixel phases, each a plain convolution run by the
    lowering `choose_phase_method` picks for it. Measured on bench_conv's two
    transposed layers (BENCHMARKS.md): forward-plus-backward 9x to 40x faster
    than lax, whose CPU gradient of an input-dilated convolution is slow;
    forward from 0.7x (DCGAN's 4x4, float32) to 2.8x lax's speed. On DCGAN's 2x2
    phase kernels 'winograd' (the plain rule's pick) and 'taps' were within the
    noise of each other in float32; in bfloat16 'taps' was faster forward and
    'winograd' about 2x faster forward-plus-backward, so the plain rule stands
    there; in float32 XLA_EIGEN replaces it since session 15, in bfloat16 'winograd''s
    forward pass with XLA_EIGEN's gradients since session 16 (`choose_phase_method`).
    Elsewhere 'xla', lax's own lhs_dilation (cuDNN's transposed convolution on
    NVIDIA GPUs), as for plain convolutions: not measured against the phases there.
    """
    del spec
    return {"cpu": PHASES, **{p: "xla" for p in ACCELERATOR_PLATFORMS}, "default": "xla"}


def auto_methods(spec: ConvSpec) -> dict[str, str]:
    """Platform -> the lowering 'auto' runs for spec there; 'default' for any other platform."""
    if not spec.is_plain:
        return auto_methods_transposed(spec)
    return {
        "cpu": choose_method(spec),
        **{p: choose_accelerator_method(spec, p) for p in ACCELERATOR_PLATFORMS},
        "default": choose_accelerator_method(spec, "default"),
    }
