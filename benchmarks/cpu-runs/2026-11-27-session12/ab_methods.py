"""Methods (or 'auto') on bench layers, interleaved batch by batch in one process.

    JAX_NUM_CPU_DEVICES=1 python benchmarks/cpu-runs/2026-11-27-session12/ab_methods.py \
        LAYER[,LAYER...] DTYPE METHOD[,METHOD...] [BATCHES]

Each (method, direction) program is compiled ahead of time after jax.clear_caches(),
then timed in BATCHES (default 15) rounds, every program once per round, each a batch
of calls lasting about 50 ms; medians. KINDS=fwd,dx,dw,fwd+bwd (the environment)
chooses what is timed; the default is fwd,fwd+bwd. A method may also be one of the
rule-only lowerings ('banded_gradients', 'taps_banded_gradients').

Every lowering named (all of jconv's RULE_LOWERINGS, not only the rule-only ones; found
in session 13) runs as 'auto' with the CPU rule made to answer it. On a plain layer that
is the lowering itself, but in bfloat16 widened to float32 where the rule widens it
('banded', multi-tap 'taps'), as 'auto' would run it; on a transposed layer (unet_up,
dcgan) each sub-pixel phase runs it, so 'xla' there is jconv's phases by lax, not lax's
own input-dilated convolution (which bench_conv.py's 'xla' rows time: 13x slower on
DCGAN's step). 'auto' is 'auto'.
"""

import functools
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

    saved = _auto.choose_method, _auto.choose_phase_method  # session 15: phases' own rule
    _auto.choose_method = _conv2d.choose_method = lambda spec: method
    _auto.choose_phase_method = _conv2d.choose_phase_method = lambda spec: method
    try:
        return b.conv(layer, "NHWC", "auto", x, w)
    finally:
        _auto.choose_method = _conv2d.choose_method = saved[0]
        _auto.choose_phase_method = _conv2d.choose_phase_method = saved[1]


def step(conv, kind: str):
    """f(x, w, ct) for one of KINDS, conv(x, w) the convolution timed."""

    def f(x, w, ct):
        if kind == "fwd":
            return conv(x, w)
        loss = lambda x, w: jnp.vdot(conv(x, w).astype(jnp.float32), ct)
        if kind == "dx":
            return jax.grad(loss, 0)(x, w)
        if kind == "dw":
            return jax.grad(loss, 1)(x, w)
        return jax.value_and_grad(loss, (0, 1))(x, w)

    return f


def compiled(f, *args):
    """f compiled ahead of time after jax.clear_caches() (conv2d's inner jit would otherwise
    reuse an earlier variant's trace), run once; returns (it, its result, seconds)."""
    jax.clear_caches()
    start = time.perf_counter()
    g = jax.jit(f).lower(*args).compile()
    out = jax.block_until_ready(g(*args))
    return g, out, time.perf_counter() - start


def interleaved_medians(fns: dict, args: tuple, rounds: int = 15) -> dict:
    """Median seconds per call of each compiled fn: `rounds` rounds, every fn once per
    round, each a batch of calls lasting about 50 ms."""
    calls = {}
    for key, g in fns.items():
        start = time.perf_counter()
        jax.block_until_ready(g(*args))
        calls[key] = max(1, int(0.05 / (time.perf_counter() - start)))
    times: dict = {key: [] for key in fns}
    for _ in range(rounds):
        for key, g in fns.items():
            start = time.perf_counter()
            for _ in range(calls[key]):
                out = g(*args)
            jax.block_until_ready(out)
            times[key].append((time.perf_counter() - start) / calls[key])
    return {key: float(np.median(t)) for key, t in times.items()}


def main(layers: str, dtype_name: str, methods: str, batches: str = "15") -> None:
    dtype = jnp.dtype(dtype_name)
    names = methods.split(",")
    for name in layers.split(","):
        layer = b.ALL_LAYERS[name]
        args = b.layer_arrays(layer, layer.batch_cpu, dtype, "NHWC", jax.random.key(0))
        fns, compile_s = {}, {}
        for method in names:
            conv = functools.partial(_conv, layer, method)
            for kind in KINDS:
                fns[(method, kind)], _, compile_s[(method, kind)] = compiled(
                    step(conv, kind), *args
                )
        medians = interleaved_medians(fns, args, int(batches))
        for kind in KINDS:
            first = medians[(names[0], kind)]
            row = "  ".join(
                f"{m} {medians[(m, kind)] * 1e3:8.3f} ms ({first / medians[(m, kind)]:.2f}x, "
                f"{compile_s[(m, kind)]:.2f} s)"
                for m in names
            )
            print(f"{name:9s} {dtype.name:8s} {kind:7s} {row}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
