"""bfloat16 grouped layers: xla_eigen, taps_eigen_gradients, grouped_elementwise in bfloat16,
and widened to float32 (JCONV_WIDEN, a switch since made permanent)."""

import functools
import importlib.util
import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, ".")
from experiments import bench_conv as b

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
names = sys.argv[3].split(",")
for name in sys.argv[1].split(","):
    layer = b.ALL_LAYERS[name]
    args = b.layer_arrays(layer, layer.batch_cpu, dtype, "NHWC", jax.random.key(0))
    fns, comp = {}, {}
    for m in names:
        os.environ["JCONV_WIDEN"] = "1" if m.endswith("+wide") else ""
        conv = functools.partial(ab._conv, layer, m.replace("+wide", ""))
        for kind in ab.KINDS:
            fns[m, kind], _, comp[m, kind] = ab.compiled(ab.step(conv, kind), *args)
    os.environ["JCONV_WIDEN"] = ""
    med = ab.interleaved_medians(fns, args, int(sys.argv[4]) if len(sys.argv) > 4 else 7)
    for kind in ab.KINDS:
        first = med[names[0], kind]
        print(
            f"{name:10s} {dtype.name:8s} {kind:7s} "
            + "  ".join(
                f"{m} {med[m, kind] * 1e3:7.3f} ms "
                f"({first / med[m, kind]:.2f}x, {comp[m, kind]:.2f} s)"
                for m in names
            ),
            flush=True,
        )
