"""method='auto': pick a lowering for a problem, per platform, from measured rules.

'auto' runs the rule of the platform its computation is lowered for (jconv/_conv2d.py
dispatches with jax.lax.platform_dependent), never of the machine's default backend:
a program exported for several platforms, or arrays on the CPU of a GPU machine,
each get their own. The rules come from experiments/bench_conv.py, forward and
forward-plus-backward together, since 'auto' cannot know whether its result will
be differentiated.

CPU (`choose_method`; a 2-core CPU, BENCHMARKS.md): one of jconv's own lowerings,
never 'xla'.

- depthwise (one input channel per group): 'vmap', whose products are all
  elementwise: a multiply-add per tap, no matrix product to waste;
- few input channels (LeNet's layers, C*kh*kw = 25 and 150): 'banded', one
  GEMM whose extra multiply-adds (the band's zeros, `banded_overhead`) cost
  less than the many shallow GEMMs of the other lowerings. On LeNet's first
  layer 'taps' is 5x faster forward but 5x slower forward-plus-backward;
  'banded' is faster than lax both ways. Its weight matrix is bounded; its
  program stops growing with the image's width past MAX_BLOCK_SLICES block
  windows (jconv/_method_banded.py), and on wide few-channel images it stays
  faster than 'winograd' both ways (BENCHMARKS.md);
- stride-1 kernels up to 5x5 (ResNet's 3x3 layers, the lesson's 5x5 layer):
  'winograd', which does 4/9 (3x3) or 9/25 (5x5) of the multiply-adds;
- everything else (1x1 kernels, strides, dilations, groups): 'taps', kh*kw
  GEMMs with no patches in memory.
'im2col' is never the fastest on a CPU in the suite and needs kh*kw copies of
the input; it stays available by name.

GPUs (CUDA, ROCm) and TPUs (`choose_accelerator_method`): 'xla', which is cuDNN
(or the TPU's convolution unit) there, unless one of jconv's lowerings is measured
faster than lax in both directions, or clearly faster overall, and within 1.5x
lax's peak memory (the compiled program's memory analysis) in both. On an NVIDIA
H100 (jax 0.11.2, bfloat16, NHWC, the suite's GPU batch sizes; the whole table in
BENCHMARKS.md), the best of jconv's lowerings on each layer of the suite, against
lax, forward / forward-plus-backward, speed and peak memory:

- the lesson's 5x5 layer, ResNet's 3x3 layers at 56, 28, 14 and 7 pixels:
  'winograd' or 'taps', 0.09x to 0.29x the speed at 4x to 12x the memory;
- the stride-2 3x3 layer: 'taps', 0.19x / 0.24x at 4.2x / 3.3x;
- depthwise 3x3: 'vmap' 0.38x / 0.41x, 'taps' 0.40x / 0.35x;
- LeNet's second layer: 'banded' 0.57x / 1.20x at 2.7x / 2.0x the memory;
- LeNet's first layer: 'taps' 2.33x forward but 0.58x with its gradient;
  'banded' 1.18x / 2.72x, but at 3.2x lax's memory forward (1.44x with the gradient);
- the 1x1 layer: 'taps' 1.23x forward, 0.95x with its gradient, the same memory.

None of these lowerings passes on any layer. jconv's GPU kernel, 'pallas', does
on some shape classes, measured on an NVIDIA H200: `choose_accelerator_method`
says which, with the measurements; everything else runs 'xla'. ROCm and TPUs
were not timed: they run 'xla', lax being their vendor's convolution too.
"""

from __future__ import annotations

import jax.numpy as jnp

from jconv._checks import ConvSpec
from jconv._method_banded import banded_overhead, banded_weight_bytes
from jconv._method_winograd import winograd_supported
from jconv._pallas_tuning import MIN_DOT

BANDED_MAX_CONTRACTION = 256  # C/groups * kh * kw: the direct GEMMs' depth is this small
BANDED_MAX_OVERHEAD = 3.0  # at most this many times the convolution's multiply-adds
BANDED_MAX_WEIGHT_BYTES = 32 * 2**20  # and a banded weight matrix of at most this size


def choose_method(spec: ConvSpec) -> str:
    """The lowering that 'auto' runs for spec on a CPU."""
    if spec.cg == 1 and spec.groups > 1:  # depthwise: every product is elementwise
        return "vmap"
    if (
        spec.kh * spec.kw > 1
        and spec.cg * spec.kh * spec.kw <= BANDED_MAX_CONTRACTION
        and banded_overhead(spec) <= BANDED_MAX_OVERHEAD
        and banded_weight_bytes(spec) <= BANDED_MAX_WEIGHT_BYTES
    ):
        return "banded"
    if winograd_supported(spec):
        return "winograd"
    return "taps"


ACCELERATOR_PLATFORMS = ("cuda", "rocm", "tpu")  # as jax.lax.platform_dependent names them
PALLAS_PLATFORMS = ("cuda",)  # where 'pallas' lowers to Triton (elsewhere: interpret mode)
PALLAS_DTYPES = (jnp.dtype(jnp.bfloat16),)  # the one dtype timed on a card
PALLAS_MAX_PIXELS = 2**31  # the kernels index padded pixels with int32


def pallas_class(spec: ConvSpec) -> str | None:
    """The shape class in which 'pallas' was measured faster than lax that spec is in, or None.

    'few channels' (C < 16), 'strided' or '1x1', in that order; only bfloat16
    NHWC convolutions without groups or dilation, as measured (see
    `choose_accelerator_method`).
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
    if max(spec.stride) > 1:
        return "strided"
    if spec.kh == spec.kw == 1:
        return "1x1"
    return None


def choose_accelerator_method(spec: ConvSpec, platform: str) -> str:
    """The lowering that 'auto' runs for spec on a GPU or TPU (or any platform but the CPU).

    'pallas' on CUDA for the shape classes where it ran faster than lax in both
    directions, forward and forward-plus-backward, within 1.5x lax's peak memory;
    'xla' everywhere else. Measured on an NVIDIA H200 (jax 0.11.2, Triton 3.6.0,
    2026-11-26; bfloat16, NHWC, the bench suite's GPU batch sizes, the tuned
    table of jconv/_pallas_tuning.py; BENCHMARKS.md has the table), speed against
    lax forward / forward-plus-backward, and peak memory against lax's:

    - few input channels (C < 16, where the kernel contracts over (tap, channel)
      flattened): LeNet's 5x5 layers, 1 -> 6 channels 2.23x / 2.35x (memory 1.00x
      / 0.58x) and 6 -> 16 channels 2.04x / 2.11x (0.64x / 0.78x);
    - strided: 3x3 stride 2, 64 -> 128 channels, 56 -> 28 pixels, 1.72x / 1.53x
      (0.59x / 0.85x);
    - 1x1: 256 -> 64 channels at 56x56, 1.37x / 1.11x (1.00x / 1.00x).

    Left to lax: stride-1 kernels of 3x3 and up with 16 or more input channels,
    where the measurements are mixed: ResNet's 3x3 at 28x28 1.28x / 1.37x, but at
    56x56 1.30x / 0.97x, at 14x14 1.56x / 0.96x (1.67x lax's memory with the
    gradient), at 7x7 0.81x / 0.59x, the lesson's 5x5 0.97x / 0.98x; depthwise
    3x3 0.72x / 0.71x (groups in general); and what was not measured: float32
    and float16 ('pallas' was timed in bfloat16 only), the NCHW layout (a
    transpose on each side of the kernel), dilation. ROCm and TPUs have no
    Triton lowering of 'pallas' here.

    A program that runs 'pallas' holds a Triton custom call: exporting it with
    jax.export for CUDA needs DisabledSafetyCheck.custom_call('__gpu$xla.gpu.triton').
    """
    if platform in PALLAS_PLATFORMS and pallas_class(spec) is not None:
        return "pallas"
    return "xla"


PHASES = "phases"  # each sub-pixel phase (jconv/_subpixel.py) by `choose_method`


def auto_methods_transposed(spec: ConvSpec) -> dict[str, str]:
    """'auto' for input dilation (transposed convolutions) or crops, per platform.

    On a CPU, PHASES: the sub-pixel phases, each a plain convolution run by the
    lowering `choose_method` picks for it. Measured on bench_conv's two
    transposed layers (BENCHMARKS.md): forward-plus-backward 9x to 40x faster
    than lax, whose CPU gradient of an input-dilated convolution is slow;
    forward from 0.7x (DCGAN's 4x4, float32) to 2.8x lax's speed. On DCGAN's 2x2
    phase kernels 'winograd' (the plain rule's pick) and 'taps' were within the
    noise of each other in float32; in bfloat16 'taps' was faster forward and
    'winograd' about 2x faster forward-plus-backward, so the plain rule stands.
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
