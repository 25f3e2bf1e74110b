"""Temporaries and page faults per call of bench layers' forward-plus-backward programs.

    JAX_NUM_CPU_DEVICES=1 python benchmarks/cpu-runs/2026-11-27-session12/faults.py \
        LAYER[,LAYER...] [METHOD ...]

For each layer and method (default: auto and xla), float32 NHWC at the bench's CPU batch:
the compiled program's temporaries (XLA's memory analysis), the minor page faults per
call (getrusage, over 11 batches of 5 calls) and the median time per call. Run it under
different MALLOC_* settings (separate processes: glibc reads them at start) to see what
the allocator's policy costs.
"""

import os
import resource
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, ".")
from experiments import bench_conv as b


def main(layers: str, *methods: str) -> None:
    settings = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
    print("settings:", settings or "glibc's defaults")
    for name in layers.split(","):
        layer = b.ALL_LAYERS[name]
        x, w, ct = b.layer_arrays(layer, layer.batch_cpu, jnp.float32, "NHWC", jax.random.key(0))
        for method in methods or ("auto", "xla"):
            g = b.make_step(layer, "NHWC", method, "fwd+bwd").lower(x, w, ct).compile()
            jax.block_until_ready(g(x, w, ct))
            times, faults = [], []
            for _ in range(11):
                before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                start = time.perf_counter()
                for _ in range(5):
                    out = g(x, w, ct)
                jax.block_until_ready(out)
                times.append((time.perf_counter() - start) / 5)
                faults.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
            temp = g.memory_analysis().temp_size_in_bytes / 2**20
            print(
                f"{name:9s} {method:5s} temporaries {temp:6.1f} MiB  faults/call "
                f"{np.median(faults):7.0f}  {np.median(times) * 1e3:8.2f} ms",
                flush=True,
            )


if __name__ == "__main__":
    main(*sys.argv[1:])
