"""bfloat16 widened lowerings: _cpu_rule narrowing with astype (before) against `narrowed`
(round_to, JCONV_NARROW; the patch that read it was reverted)."""

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
ab.RULE_ONLY.add("grouped_elementwise")
for item in os.environ.get("SHAPES", "").split(";"):
    if item:
        name, rest = item.split("=")
        c, o, hw, n, g, *k = map(int, rest.split(","))
        b.ALL_LAYERS[name] = b.Layer(name, c, o, k[0] if k else 3, hw, 1, "SAME", g, n, n, name)
dtype = jnp.dtype(sys.argv[2])
method = sys.argv[3]
for name in sys.argv[1].split(","):
    layer = b.ALL_LAYERS[name]
    args = b.layer_arrays(layer, layer.batch_cpu, dtype, "NHWC", jax.random.key(0))
    fns, comp = {}, {}
    for v in ("astype", "narrowed"):
        os.environ["JCONV_NARROW"] = "1" if v == "narrowed" else ""
        conv = functools.partial(ab._conv, layer, method)
        for kind in ab.KINDS:
            fns[v, kind], _, comp[v, kind] = ab.compiled(ab.step(conv, kind), *args)
    os.environ["JCONV_NARROW"] = ""
    med = ab.interleaved_medians(fns, args, 9)
    for kind in ab.KINDS:
        a_, n_ = med["astype", kind], med["narrowed", kind]
        print(
            f"{name:10s} {dtype.name} {method} {kind:7s} "
            f"astype {a_ * 1e3:7.3f} ms ({comp['astype', kind]:.2f} s)  "
            f"narrowed {n_ * 1e3:7.3f} ms ({comp['narrowed', kind]:.2f} s)  {a_ / n_:.2f}x",
            flush=True,
        )
