"""ab_methods.py on transposed layers outside the bench (4x4 stride-2 up-sampling, DCGAN's).

    JAX_NUM_CPU_DEVICES=1 python benchmarks/cpu-runs/2026-11-27-session15/ab_transposed.py \
        "c,o,hw,n[,k];..." METHOD[,METHOD...] [ROUNDS]

Each layer is bench_conv.py's dcgan with other channels, size and batch (a k x k kernel,
default 4, stride 2, padding 1); the rest is ab_methods.py's main. DTYPE (the
environment, default float32) is the inputs' dtype (session 16 added it).
"""

import os
import sys

sys.path.insert(0, ".")
sys.path.insert(0, "benchmarks/cpu-runs/2026-11-27-session12")
import ab_methods as ab

from experiments import bench_conv as b


def main(shapes: str, methods: str, rounds: str = "9") -> None:
    names = []
    for shape in shapes.split(";"):
        c, o, hw, n, k = (*(int(v) for v in shape.split(",")), 4)[:5]
        name = f"up{c}-{o}@{hw}n{n}k{k}"
        b.ALL_LAYERS[name] = b.Layer(name, c, o, k, hw, 2, 1, 1, n, n, "", True)
        names.append(name)
    ab.main(",".join(names), os.environ.get("DTYPE", "float32"), methods, rounds)


if __name__ == "__main__":
    main(*sys.argv[1:])
