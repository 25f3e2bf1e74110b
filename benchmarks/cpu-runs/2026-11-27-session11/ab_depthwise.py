"""Session 10's depthwise members against this checkout's, interleaved in one process.

Run from the project root, with session 10's module checked out beside it:

    git worktree add old bfffdfc
    JAX_NUM_CPU_DEVICES=1 python benchmarks/cpu-runs/2026-11-27-session11/ab_depthwise.py NHWC

Three variants of the 'taps' lowering on bench_conv's depthwise layer: 'old' (session
10's y, dx and dw), 'new' (this checkout's) and 'dw only' (this checkout's kernel
gradient with session 10's forward pass and input gradient). Each program is compiled
ahead of time after jax.clear_caches(): conv2d's inner jit would otherwise reuse the
first variant's trace for the others. 21 batches of 20 calls each, the variants
interleaved batch by batch; medians.
"""

import importlib.util
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, ".")
import jconv._method_depthwise as new
from experiments import bench_conv as b

OLD_PATH = "old/jconv/_method_depthwise.py"


def main(layout: str, dtype_name: str = "float32", old_path: str = OLD_PATH) -> None:
    spec = importlib.util.spec_from_file_location("old_depthwise", old_path)
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    dtype = jnp.dtype(dtype_name)
    layer = b.LAYERS["depthwise"]
    x, w, ct = b.layer_arrays(layer, layer.batch_cpu, dtype, layout, jax.random.key(0))
    variants = {
        "old": new.DEPTHWISE._replace(
            y=old.depthwise_y, dx=old._depthwise_dx, dw=old._depthwise_dw
        ),
        "new": new.DEPTHWISE,
        "dw only": new.DEPTHWISE._replace(y=old.depthwise_y, dx=old._depthwise_dx),
    }

    def compiled(name: str, kind: str):
        def f(x, w, ct):
            new.DEPTHWISE = variants[name]  # conv_depthwise reads it when traced

            def loss(x, w):
                return jnp.vdot(b.conv(layer, layout, "taps", x, w).astype(jnp.float32), ct)

            if kind == "y":
                return b.conv(layer, layout, "taps", x, w)
            if kind == "dx":
                return jax.grad(loss, 0)(x, w)
            if kind == "dw":
                return jax.grad(loss, 1)(x, w)
            return jax.value_and_grad(loss, (0, 1))(x, w)

        jax.clear_caches()
        g = jax.jit(f).lower(x, w, ct).compile()
        jax.block_until_ready(g(x, w, ct))
        return g

    kinds = ("y", "dx", "dw", "vg")
    fns = {(n, k): compiled(n, k) for k in kinds for n in variants}
    times: dict = {key: [] for key in fns}
    for _ in range(21):
        for key, g in fns.items():
            start = time.perf_counter()
            for _ in range(20):
                out = g(x, w, ct)
            jax.block_until_ready(out)
            times[key].append((time.perf_counter() - start) / 20)
    for k in kinds:
        o, n, d = (np.median(times[(v, k)]) * 1e3 for v in variants)
        print(
            f"{layout} {dtype.name} {k:3s} old {o:7.3f} ms  new {n:7.3f} ms  dw only {d:7.3f} ms"
            f"  old/new {o / n:5.2f}x  old/dw-only {o / d:5.2f}x"
        )


if __name__ == "__main__":
    main(*sys.argv[1:])
