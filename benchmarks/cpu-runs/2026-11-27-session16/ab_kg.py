"""Interleaved A/B of 'winograd''s kernel gradient: session 15's (a GEMM per transformed
position, copied here) against session 16's (stacked V and dM, one batched GEMM), 'auto'
on bench layers: compile seconds (median of 3) and run time per kind, medians of 11
interleaved rounds, and the largest difference between the two results.

    JAX_NUM_CPU_DEVICES=1 python benchmarks/cpu-runs/2026-11-27-session16/ab_kg.py \
        LAYER[,LAYER...] DTYPE[,DTYPE...] KIND[,KIND...]
"""

import functools
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, ".")
sys.path.insert(0, "benchmarks/cpu-runs/2026-11-27-session12")
import ab_methods as ab

import jconv._method_winograd as W
from experiments import bench_conv as b
from jconv._winograd_matrices import winograd_matrices


def per_position(x, dy, spec, kernel_sharding):
    """Session 15's _kernel_gradient."""
    (top, _), (left, _) = spec.pads
    tiles = W._tile_counts(*dy.shape[1:3])
    fh, fw = winograd_matrices(W.TILE, spec.kh), winograd_matrices(W.TILE, spec.kw)
    v_grid = W._input_transform(x, (spec.kh, spec.kw), (top, left), tiles)
    dm_tiles = W._tile_grid(dy, (0, 0), tiles, (W.TILE, W.TILE))
    dm_grid = W._transform_2d(fh.at.T, fw.at.T, dm_tiles)
    flat = lambda grid: [[a.reshape(-1, a.shape[-1]) for a in row] for row in grid]
    sharding = W._tap_sharding(kernel_sharding)
    du_grid = W._matmul_grid(spec, "mc,mo->co", flat(v_grid), flat(dm_grid), sharding)
    return W._kernel_transform(fh.g.T, fw.g.T, du_grid)


VARIANTS = {"main": per_position, "stacked": W._kernel_gradient}


def compile_seconds(layer, kind, args):
    f = ab.step(functools.partial(ab._conv, layer, "auto"), kind)
    jax.clear_caches()
    start = time.perf_counter()
    g = jax.jit(f).lower(*args).compile()
    return g, time.perf_counter() - start


def largest_difference(a, b):
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b))
    f32 = lambda v: jnp.asarray(v, jnp.float32)
    return max(float(jnp.abs(f32(p) - f32(q)).max() / jnp.abs(f32(p)).max()) for p, q in pairs)


def main(layers: str, dtypes: str, kinds: str) -> None:
    for name in layers.split(","):
        layer = b.ALL_LAYERS[name]
        for dt in dtypes.split(","):
            args = b.layer_arrays(layer, layer.batch_cpu, jnp.dtype(dt), "NHWC", jax.random.key(0))
            fns, secs = {}, {}
            for kind in kinds.split(","):
                for v, kernel_gradient in VARIANTS.items():
                    W._kernel_gradient = kernel_gradient
                    runs = [compile_seconds(layer, kind, args) for _ in range(3)]
                    fns[(kind, v)] = runs[-1][0]
                    secs[(kind, v)] = float(np.median([s for _, s in runs]))
            med = ab.interleaved_medians(fns, args, 11)
            for kind in kinds.split(","):
                m, s = (kind, "main"), (kind, "stacked")
                diff = largest_difference(fns[m](*args), fns[s](*args))
                print(
                    f"{name:9s} {dt:8s} {kind:7s} main {med[m] * 1e3:8.3f} ms ({secs[m]:.2f} s)"
                    f"  stacked {med[s] * 1e3:8.3f} ms ({secs[s]:.2f} s)"
                    f"  speed {med[m] / med[s]:.2f}x  diff {diff:.1e}",
                    flush=True,
                )


if __name__ == "__main__":
    main(*sys.argv[1:])
