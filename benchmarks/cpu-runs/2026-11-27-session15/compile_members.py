"""Compile time and run time of lowerings on square layers, interleaved in one process.

    JAX_NUM_CPU_DEVICES=1 python benchmarks/cpu-runs/2026-11-27-session15/compile_members.py \
        "n,hw,c,o,k,padding;..." METHOD[,METHOD...] [ROUNDS]

padding: SAME, VALID or an integer. For each layer and method (a rule-only lowering runs
as 'auto' with the CPU rule made to answer it, as ab_methods.py does), every KINDS program
(fwd, dx, dw, fwd+bwd; bench_conv.py's loss, its cotangent an argument; DTYPE the
inputs' dtype, float32 by default) is lowered and
compiled after jax.clear_caches(): the seconds printed are lower + compile, what a first
call waits for besides the run. Then all programs are timed interleaved, ROUNDS rounds
(default 9), medians. A method named twice is compiled and timed twice (the spread).
"""

import functools
import os
import sys
import time

import jax

sys.path.insert(0, ".")
sys.path.insert(0, "benchmarks/cpu-runs/2026-11-27-session12")
import ab_methods as ab

from experiments import bench_conv as b

KINDS = tuple(os.environ.get("KINDS", "fwd,dx,fwd+bwd").split(","))
DTYPE = os.environ.get("DTYPE", "float32")  # the inputs' dtype


def compile_seconds(f, *args):
    jax.clear_caches()
    start = time.perf_counter()
    g = jax.jit(f).lower(*args).compile()
    seconds = time.perf_counter() - start
    jax.block_until_ready(g(*args))
    return g, seconds


def main(shapes: str, methods: str, rounds: str = "9") -> None:
    names = methods.split(",")
    for shape in shapes.split(";"):
        n, hw, c, o, k, pad = shape.split(",")
        padding = pad if pad in ("SAME", "VALID") else int(pad)
        layer = b.Layer(shape, int(c), int(o), int(k), int(hw), 1, padding, 1, int(n), 1, "")
        dtype = jax.numpy.dtype(DTYPE)
        args = b.layer_arrays(layer, layer.batch_cpu, dtype, "NHWC", jax.random.key(0))
        fns, secs = {}, {}
        for i, m in enumerate(names):  # a method named twice is compiled twice
            conv = functools.partial(ab._conv, layer, m)
            for kind in KINDS:
                fns[(i, kind)], secs[(i, kind)] = compile_seconds(ab.step(conv, kind), *args)
        med = ab.interleaved_medians(fns, args, int(rounds))
        for kind in KINDS:
            first = med[(0, kind)]
            row = "  ".join(
                f"{m} {med[(i, kind)] * 1e3:8.3f} ms ({first / med[(i, kind)]:.2f}x, "
                f"{secs[(i, kind)]:.2f} s)"
                for i, m in enumerate(names)
            )
            print(f"{shape:22s} {kind:7s} {row}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
