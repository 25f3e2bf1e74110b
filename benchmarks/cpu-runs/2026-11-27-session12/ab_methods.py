"""Methods (or 'auto') on bench layers, interleaved batch by batch in one process.

    JAX_NUM_CPU_DEVICES=1 python benchmarks/cpu-runs/2026-11-27-session12/ab_methods.py \
        LAYER[,LAYER...] DTYPE METHOD[,METHOD...] [BATCHES]

Each (method, direction) program is compiled ahead of time after jax.clear_caches(),
then timed in BATCHES (default 15) rounds, every program once per round, each a batch
of calls lasting about 50 ms; medians. KINDS=fwd,dx,dw,fwd+bwd (the environment)
chooses what is timed; the default is fwd,fwd+bwd. A method may also be one of the
rule-only lowerings ('banded_gradients', 'taps_banded_gradients'): 'auto' with the
CPU rule made to answer it.
"""

import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, ".")
from experiments import bench_conv as b
from jconv import _conv2d

RULE_ONLY = set(_conv2d.RULE_LOWERINGS)
# what is timed: the forward pass, each gradient alone, value and both gradients
KINDS = tuple(os.environ.get("KINDS", "fwd,fwd+bwd").split(","))


def _conv(layer, method, x, w):
    if method not in RULE_ONLY:
        return b.conv(layer, "NHWC", method, x, w)
    # a rule-only lowering: 'auto' with the CPU rule answering it
    from jconv import _auto

    saved = _auto.choose_method
    _auto.choose_method = _conv2d.choose_method = lambda spec: method
    try:
        return b.conv(layer, "NHWC", "auto", x, w)
    finally:
        _auto.choose_method = _conv2d.choose_method = saved


def main(layers: str, dtype_name: str, methods: str, batches: str = "15") -> None:
    dtype = jnp.dtype(dtype_name)
    for name in layers.split(","):
        layer = b.ALL_LAYERS[name]
        x, w, ct = b.layer_arrays(layer, layer.batch_cpu, dtype, "NHWC", jax.random.key(0))
        fns = {}
        for method in methods.split(","):
            for kind in KINDS:

                def f(x, w, ct, method=method, kind=kind, layer=layer):
                    if kind == "fwd":
                        return _conv(layer, method, x, w)
                    loss = lambda x, w: jnp.vdot(_conv(layer, method, x, w).astype(jnp.float32), ct)
                    if kind == "dx":
                        return jax.grad(loss, 0)(x, w)
                    if kind == "dw":
                        return jax.grad(loss, 1)(x, w)
                    return jax.value_and_grad(loss, (0, 1))(x, w)

                jax.clear_caches()
                s = time.perf_counter()
                g = jax.jit(f).lower(x, w, ct).compile()
                jax.block_until_ready(g(x, w, ct))
                fns[(method, kind)] = (g, time.perf_counter() - s)
        calls = {}
        for key, (g, _) in fns.items():
            s = time.perf_counter()
            jax.block_until_ready(g(x, w, ct))
            calls[key] = max(1, int(0.05 / (time.perf_counter() - s)))
        times = {key: [] for key in fns}
        for _ in range(int(batches)):
            for key, (g, _) in fns.items():
                s = time.perf_counter()
                for _ in range(calls[key]):
                    out = g(x, w, ct)
                jax.block_until_ready(out)
                times[key].append((time.perf_counter() - s) / calls[key])
        for kind in KINDS:
            first = np.median(times[(methods.split(",")[0], kind)])
            ms = {m: np.median(times[(m, kind)]) for m in methods.split(",")}
            row = "  ".join(
                f"{m} {t * 1e3:8.3f} ms ({first / t:.2f}x, {fns[(m, kind)][1]:.2f} s)"
                for m, t in ms.items()
            )
            print(f"{name:9s} {dtype.name:8s} {kind:7s} {row}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
