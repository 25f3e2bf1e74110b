"""method='auto': pick one of jconv's own lowerings for a problem, from a cost model.

The model is a handful of rules measured on the benchmark suite
(experiments/bench_conv.py, see BENCHMARKS.md); it never picks 'xla'.
"""

from __future__ import annotations

import jax

from jconv._checks import ConvSpec
from jconv._method_im2col import patch_bytes

# im2col's patches must stay below this many bytes, and below this multiple of x's size
# (a guard on peak memory: the patches hold kh*kw copies of the input).
IM2COL_MAX_BYTES = 256 * 2**20
IM2COL_MAX_GROWTH = 32


def _input_bytes(spec: ConvSpec) -> int:
    hp, wp = spec.padded_hw
    return spec.n * spec.c * hp * wp * jax.numpy.dtype(spec.dtype).itemsize


def im2col_fits(spec: ConvSpec) -> bool:
    """Whether im2col's patches are small enough to build."""
    size = patch_bytes(spec)
    return size <= IM2COL_MAX_BYTES and size <= IM2COL_MAX_GROWTH * max(_input_bytes(spec), 1)


def choose_method(spec: ConvSpec, backend: str | None = None) -> str:
    """The lowering 'auto' runs for spec on backend (default: JAX's default backend)."""
    backend = backend or jax.default_backend()
    taps = spec.kh * spec.kw
    if spec.cg == 1 and spec.og == 1 and taps > 1:
        return "vmap"  # depthwise: a multiply-add per tap, no matrix product
    if taps == 1 or (spec.cg * taps <= 256 and im2col_fits(spec)):
        return "im2col"  # one GEMM whose contraction is deep enough to pay for the patches
    return "taps"
