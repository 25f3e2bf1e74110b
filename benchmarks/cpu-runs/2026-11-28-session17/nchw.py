"""GROUPED_ELEMENTWISE in NCHW: 'auto' (which runs it) against XLA_EIGEN and
TAPS_EIGEN_GRADIENTS (what 'auto' ran before), interleaved in one process.

    SHAPES="NAME=c,o,hw,n,groups[,k[,stride]];..." JAX_NUM_CPU_DEVICES=1 python \
        benchmarks/cpu-runs/2026-11-28-session17/nchw.py LAYERS DTYPE METHODS [ROUNDS]
"""

import functools
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, ".")
sys.path.insert(0, "benchmarks/cpu-runs/2026-11-28-session17")
import grouped  # registers the shapes of SHAPES  # noqa: F401
from grouped import ab, b


def _conv(layer, method, x, w):
    """ab_methods' _conv in NCHW."""
    if method not in ab.RULE_ONLY:
        return b.conv(layer, "NCHW", method, x, w)
    from jconv import _auto, _conv2d

    saved = _auto.choose_method
    _auto.choose_method = _conv2d.choose_method = lambda spec: method
    try:
        return b.conv(layer, "NCHW", "auto", x, w)
    finally:
        _auto.choose_method = _conv2d.choose_method = saved


def main(layers, dtype_name, methods, rounds="7"):
    dtype, names = jnp.dtype(dtype_name), methods.split(",")
    for name in layers.split(","):
        layer = b.ALL_LAYERS[name]
        args = b.layer_arrays(layer, layer.batch_cpu, dtype, "NCHW", jax.random.key(0))
        fns, comp = {}, {}
        for m in names:
            for kind in ab.KINDS:
                step = ab.step(functools.partial(_conv, layer, m), kind)
                fns[m, kind], _, comp[m, kind] = ab.compiled(step, *args)
        med = ab.interleaved_medians(fns, args, int(rounds))
        for kind in ab.KINDS:
            first = med[names[0], kind]
            row = "  ".join(
                f"{m} {med[m, kind] * 1e3:8.3f} ms ({first / med[m, kind]:.2f}x, "
                f"{comp[m, kind]:.2f} s)"
                for m in names
            )
            print(f"{name:10s} {dtype.name:8s} NCHW {kind:7s} {row}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
