"""Compile time of 'auto''s forward-plus-backward step with and without the finiteness guard.

    JAX_NUM_CPU_DEVICES=1 python benchmarks/cpu-runs/2026-11-27-session13/guard_compile.py \
        LAYER[,LAYER...]

The guard (jconv/_finite_guard.py) replaced by the fast result alone, alternately with the
real one, caches cleared before each compile; prints seconds and the fusions compiled.
"""

import sys
import time

import jax

sys.path.insert(0, ".")
from experiments import bench_conv as b
from jconv import _conv_primitive as cp

GUARDED = cp.finite_or_exact


def unguarded(result, exact, *operands):
    return result


def main(layers: str) -> None:
    for name in layers.split(","):
        layer = b.ALL_LAYERS[name]
        dtype = b.DTYPES["float32"]
        args = b.layer_arrays(layer, layer.batch_cpu, dtype, "NHWC", jax.random.key(0))
        for mode in ("guarded", "unguarded", "guarded", "unguarded"):
            cp.finite_or_exact = GUARDED if mode == "guarded" else unguarded
            jax.clear_caches()
            start = time.perf_counter()
            compiled = b.make_step(layer, "NHWC", "auto", "fwd+bwd").lower(*args).compile()
            seconds = time.perf_counter() - start
            print(name, mode, f"{seconds:.2f} s", compiled.as_text().count("fusion("), flush=True)
    cp.finite_or_exact = GUARDED


if __name__ == "__main__":
    main(*sys.argv[1:])
