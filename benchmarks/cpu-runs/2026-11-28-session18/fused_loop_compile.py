"""Compile milliseconds of one fused loop: one transformed position of 'winograd''s F(2x2,
3x3) input transform, (N, 2t+2, 2t+2, C) -> (N * t * t, C) as the GEMM takes it, the t x t
tiles in (N, t, t) order, for N in (1, 8), C down the rows and t across (best of 3).

    python benchmarks/cpu-runs/2026-11-28-session18/fused_loop_compile.py
"""

import time

import jax
import jax.numpy as jnp

SIDES = (2, 3, 4, 5, 6, 7, 8, 10, 12, 14)


def position(x):
    t = x.shape[1] // 2 - 1
    s = lambda a, b: x[:, a : a + 2 * t - 1 : 2, b : b + 2 * t - 1 : 2, :]
    return (-(-s(0, 1) + s(2, 1)) + (-s(0, 3) + s(2, 3))).reshape(-1, x.shape[-1])


def compile_ms(shape) -> float:
    x, best = jnp.zeros(shape, jnp.float32), float("inf")
    for _ in range(3):
        jax.clear_caches()
        start = time.perf_counter()
        jax.jit(position).lower(x).compile()
        best = min(best, time.perf_counter() - start)
    return 1e3 * best


print("N C \\ t " + " ".join(f"{t:5d}" for t in SIDES))
for n in (1, 8):
    for c in (32, 64, 96, 128, 192, 256, 384, 512):
        row = " ".join(f"{compile_ms((n, 2 * t + 2, 2 * t + 2, c)):5.0f}" for t in SIDES)
        print(n, c, row, flush=True)
