"""What session 17's probe scripts share: session 12's ab_methods.py (`ab`), bench_conv
(`b`), the extra grouped shapes of the SHAPES environment variable (`register_shapes`),
rule-only lowerings registered by name, and two interleaved timers.
"""

import functools
import importlib.util
import os
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, ".")
from experiments import bench_conv as b
from jconv import _conv2d
from jconv._conv_primitive import lowered_conv

_spec = importlib.util.spec_from_file_location(
    "ab", "benchmarks/cpu-runs/2026-11-27-session12/ab_methods.py"
)
ab = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ab)
ab.RULE_ONLY.add("grouped_elementwise")


def register_shapes() -> None:
    """Layers from SHAPES="NAME=c,o,hw,n,groups[,k[,stride]];..." (3x3, stride 1 by
    default) in bench_conv's table."""
    for item in os.environ.get("SHAPES", "").split(";"):
        if item:
            name, rest = item.split("=")
            c, o, hw, n, g, *more = map(int, rest.split(","))
            k, stride = (more + [3, 1][len(more) :])[:2]
            b.ALL_LAYERS[name] = b.Layer(name, c, o, k, hw, stride, "SAME", g, n, n, name)


def register(lowerings: dict) -> None:
    """Lowerings (name -> jconv Lowering) that ab_methods may name, as 'auto' runs them."""
    for name, lowering in lowerings.items():
        _conv2d.RULE_LOWERINGS[name] = functools.partial(_lowered, lowering=lowering)
    ab.RULE_ONLY.update(lowerings)


def _lowered(x, w, spec, lowering):
    return lowered_conv(x, w, spec, lowering)


def compare(
    layers: str,
    dtype_name: str,
    variants: dict[str, Callable[[], None]],
    conv_for: Callable,
    layout: str = "NHWC",
    rounds: int = 7,
) -> None:
    """Each variant (label -> setup run before its programs are traced) of each layer's
    conv_for(layer, label)(x, w), for ab.KINDS, compiled after jax.clear_caches() and timed
    interleaved; one line a kind: ms, speed against the first variant, compile s."""
    dtype, labels = jnp.dtype(dtype_name), list(variants)
    for name in layers.split(","):
        layer = b.ALL_LAYERS[name]
        args = b.layer_arrays(layer, layer.batch_cpu, dtype, layout, jax.random.key(0))
        fns, comp = {}, {}
        for label, setup in variants.items():
            setup()
            conv = conv_for(layer, label)
            for kind in ab.KINDS:
                fns[label, kind], _, comp[label, kind] = ab.compiled(ab.step(conv, kind), *args)
        med = ab.interleaved_medians(fns, args, rounds)
        for kind in ab.KINDS:
            first = med[labels[0], kind]
            row = "  ".join(
                f"{v} {med[v, kind] * 1e3:8.3f} ms ({first / med[v, kind]:.2f}x, "
                f"{comp[v, kind]:.2f} s)"
                for v in labels
            )
            print(f"{name:10s} {dtype.name:8s} {layout} {kind:7s} {row}", flush=True)


def median_times(fns: dict, args: tuple, rounds: int, calls: int) -> dict:
    """Median seconds a call of each jitted fn, `rounds` rounds of `calls` calls each, the
    fns interleaved."""
    times: dict = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            start = time.perf_counter()
            for _ in range(calls):
                out = f(*args)
            out.block_until_ready()
            times[k].append((time.perf_counter() - start) / calls)
    return {k: float(np.median(v)) for k, v in times.items()}
