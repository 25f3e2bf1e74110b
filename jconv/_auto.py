"""method='auto': pick one of jconv's own lowerings for a problem, from a cost model.

The rules come from experiments/bench_conv.py on a 2-core CPU (BENCHMARKS.md),
forward and forward-plus-backward together, since 'auto' cannot know whether
its result will be differentiated. It never picks 'xla'.

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
"""

from __future__ import annotations

from jconv._checks import ConvSpec
from jconv._method_banded import banded_overhead, banded_weight_bytes
from jconv._method_winograd import winograd_supported

BANDED_MAX_CONTRACTION = 256  # C/groups * kh * kw: the direct GEMMs' depth is this small
BANDED_MAX_OVERHEAD = 3.0  # at most this many times the convolution's multiply-adds
BANDED_MAX_WEIGHT_BYTES = 32 * 2**20  # and a banded weight matrix of at most this size


def choose_method(spec: ConvSpec) -> str:
    """The lowering that 'auto' runs for spec."""
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
