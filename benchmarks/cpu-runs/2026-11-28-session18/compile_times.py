"""Seconds to lower and to compile bench_conv's programs (caches cleared before each).

    LAYOUT=NHWC JAX_NUM_CPU_DEVICES=1 python \
        benchmarks/cpu-runs/2026-11-28-session18/compile_times.py LAYERS DTYPE [METHOD] [REPS]

One line a layer and direction: the fastest lowering, then each compile.
"""

import os
import sys
import time

import jax

sys.path.insert(0, "experiments")
import bench_conv as bc

LAYOUT = os.environ.get("LAYOUT", "NHWC")


def main(names: str, dtype: str, method: str = "auto", reps: str = "3") -> None:
    for name in names.split(","):
        layer = bc.ALL_LAYERS[name]
        args = bc.layer_arrays(layer, layer.batch_cpu, bc.DTYPES[dtype], LAYOUT, jax.random.key(0))
        for direction in bc.DIRECTIONS:
            step = bc.make_step(layer, LAYOUT, method, direction)
            lowering, compiling = [], []
            for _ in range(int(reps)):
                jax.clear_caches()
                start = time.perf_counter()
                lowered = step.lower(*args)
                middle = time.perf_counter()
                lowered.compile()
                lowering.append(middle - start)
                compiling.append(time.perf_counter() - middle)
            each = " ".join(f"{s:.2f}" for s in compiling)
            print(f"{LAYOUT} {name} {dtype} {method} {direction} lower {min(lowering):.2f} "
                  f"compile {each}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main(*sys.argv[1:])
