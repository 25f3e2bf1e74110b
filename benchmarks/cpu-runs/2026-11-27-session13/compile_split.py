"""Where a step's compile time goes: trace, lower and XLA's compile, apart.

    JAX_NUM_CPU_DEVICES=1 python benchmarks/cpu-runs/2026-11-27-session13/compile_split.py \
        LAYER[,LAYER...] [DTYPE] [METHOD[,METHOD...]]

bench_conv's forward-plus-backward step for each layer (NHWC, the CPU batch) and method
(default: auto and xla), caches cleared first; prints each stage's seconds and the number
of fusions in the optimized program.
"""

import sys
import time

import jax

sys.path.insert(0, ".")
from experiments import bench_conv as b


def main(layers: str, dtype: str = "float32", methods: str = "auto,xla") -> None:
    for name in layers.split(","):
        layer = b.ALL_LAYERS[name]
        args = b.layer_arrays(layer, layer.batch_cpu, b.DTYPES[dtype], "NHWC", jax.random.key(0))
        for method in methods.split(","):
            step = b.make_step(layer, "NHWC", method, "fwd+bwd")
            jax.clear_caches()
            t0 = time.perf_counter()
            traced = step.trace(*args)
            t1 = time.perf_counter()
            lowered = traced.lower()
            t2 = time.perf_counter()
            fusions = lowered.compile().as_text().count("fusion(")
            t3 = time.perf_counter()
            print(
                f"{name:9s} {method:5s} trace {t1 - t0:.2f} lower {t2 - t1:.2f} "
                f"compile {t3 - t2:.2f} total {t3 - t0:.2f}  fusions {fusions}",
                flush=True,
            )


if __name__ == "__main__":
    main(*sys.argv[1:])
