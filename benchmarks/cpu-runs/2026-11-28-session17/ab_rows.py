"""GROUPED_ELEMENTWISE's scan kernel gradient with the rows a step capped
(MAX_TERMS 72, the default then, 18, 9)."""

import functools
import importlib.util
import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, ".")
from experiments import bench_conv as b
from jconv import _method_depthwise as md

spec = importlib.util.spec_from_file_location(
    "ab", "benchmarks/cpu-runs/2026-11-27-session12/ab_methods.py"
)
ab = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ab)
for item in os.environ.get("SHAPES", "").split(";"):
    if item:
        name, rest = item.split("=")
        c, o, hw, n, g, *k = map(int, rest.split(","))
        b.ALL_LAYERS[name] = b.Layer(name, c, o, k[0] if k else 3, hw, 1, "SAME", g, n, n, name)
dtype = jnp.dtype(sys.argv[2])
terms = [int(t) for t in sys.argv[3].split(",")]
orig = md._row_block
for name in sys.argv[1].split(","):
    layer = b.ALL_LAYERS[name]
    args = b.layer_arrays(layer, layer.batch_cpu, dtype, "NHWC", jax.random.key(0))
    fns, comp = {}, {}
    for t in terms:
        md._row_block = lambda mh, taps, t=t: md._divisor_at_most(mh, t // taps)
        conv = functools.partial(ab._conv, layer, "auto")
        for kind in ab.KINDS:
            fns[t, kind], _, comp[t, kind] = ab.compiled(ab.step(conv, kind), *args)
    md._row_block = orig
    med = ab.interleaved_medians(fns, args, 7)
    for kind in ab.KINDS:
        f = med[terms[0], kind]
        print(
            f"{name:10s} {dtype.name:8s} {kind:7s} "
            + "  ".join(
                f"terms {t}: {med[t, kind] * 1e3:7.3f} ms "
                f"({f / med[t, kind]:.2f}x, {comp[t, kind]:.2f} s)"
                for t in terms
            ),
            flush=True,
        )
