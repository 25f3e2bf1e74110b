"""Write bench_conv's compiled program (NHWC) to scratch/ and count its operations.

    JAX_NUM_CPU_DEVICES=1 python benchmarks/cpu-runs/2026-11-28-session18/hlo.py \
        LAYER DTYPE METHOD DIRECTION
"""

import collections
import os
import re
import sys

import jax

sys.path.insert(0, "experiments")
import bench_conv as bc


def main(name: str, dtype: str, method: str, direction: str) -> None:
    layer = bc.ALL_LAYERS[name]
    args = bc.layer_arrays(layer, layer.batch_cpu, bc.DTYPES[dtype], "NHWC", jax.random.key(0))
    text = bc.make_step(layer, "NHWC", method, direction).lower(*args).compile().as_text()
    os.makedirs("scratch", exist_ok=True)
    with open(f"scratch/{name}_{dtype}_{method}_{direction}.hlo", "w") as f:
        f.write(text)
    ops = collections.Counter(re.findall(r"= \S+ (\w[\w-]*)\(", text))
    print(name, sorted(ops.items(), key=lambda t: -t[1])[:15])
    print("fusion kinds", collections.Counter(re.findall(r"kind=(k\w+)", text)))


if __name__ == "__main__":
    main(*sys.argv[1:])
