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
  'banded' is faster than lax both ways;
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

No lowering passes on any layer, so 'xla' it is everywhere. The 1x1 and LeNet
layers are the ones to re-measure once a lowering changes (a GPU kernel of
jconv's own, or a forward 'banded' within the memory bound). ROCm and TPUs were
not timed: they take the same rule, lax being their vendor's convolution too.
"""

from __future__ import annotations

from jconv._checks import ConvSpec
from jconv._method_banded import banded_overhead, banded_weight_bytes
from jconv._method_winograd import winograd_supported

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


def choose_accelerator_method(spec: ConvSpec, platform: str) -> str:
    """The lowering that 'auto' runs for spec on a GPU or TPU (or any platform but the CPU).

    'xla' for every problem: no lowering of jconv's passed the rule above on
    any layer of the suite (module docstring). spec and platform are where a
    measured exception would look.
    """
    del spec, platform
    return "xla"


def auto_methods(spec: ConvSpec) -> dict[str, str]:
    """Platform -> the lowering 'auto' runs for spec there; 'default' for any other platform."""
    return {
        "cpu": choose_method(spec),
        **{p: choose_accelerator_method(spec, p) for p in ACCELERATOR_PLATFORMS},
        "default": choose_accelerator_method(spec, "default"),
    }
