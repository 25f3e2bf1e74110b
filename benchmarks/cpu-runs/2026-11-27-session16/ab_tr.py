"""ab_methods.py on transposed layers outside the bench, in a given dtype (session 15's
ab_transposed.py is float32 only).

    JAX_NUM_CPU_DEVICES=1 python benchmarks/cpu-runs/2026-11-27-session16/ab_tr.py \
        "c,o,hw,n[,k];..." DTYPE METHOD[,METHOD...] [ROUNDS]

Each layer is bench_conv.py's dcgan with other channels, size and batch (a k x k kernel,
default 4, stride 2, padding 1). A rule-only lowering (xla_eigen,
winograd_eigen_gradients, ...) runs every sub-pixel phase, as ab_methods.py runs it.
Session 16 ran it before WINOGRAD_EIGEN_GRADIENTS was in jconv, with the same pair
registered by hand.
"""

import sys

sys.path.insert(0, ".")
sys.path.insert(0, "benchmarks/cpu-runs/2026-11-27-session12")
import ab_methods as ab

from experiments import bench_conv as b


def main(shapes: str, dtype: str, methods: str, rounds: str = "9") -> None:
    names = []
    for shape in shapes.split(";"):
        c, o, hw, n, k = (*(int(v) for v in shape.split(",")), 4)[:5]
        name = f"up{c}-{o}@{hw}n{n}k{k}"
        b.ALL_LAYERS[name] = b.Layer(name, c, o, k, hw, 2, 1, 1, n, n, "", True)
        names.append(name)
    ab.main(",".join(names), dtype, methods, rounds)


if __name__ == "__main__":
    main(*sys.argv[1:])
