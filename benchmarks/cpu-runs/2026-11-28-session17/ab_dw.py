"""GROUPED_ELEMENTWISE with its kernel gradient by the scan (SCAN_MIN_WINDOW_BYTES 0)
against XLA_EIGEN's (huge), interleaved."""

import functools
import importlib.util
import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, ".")
from experiments import bench_conv as b
from jconv import _method_xla_eigen as me

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
variants = {"eigen_dw": 1 << 62, "scan_dw": 0}
for name in sys.argv[1].split(","):
    layer = b.ALL_LAYERS[name]
    args = b.layer_arrays(layer, layer.batch_cpu, dtype, "NHWC", jax.random.key(0))
    x = args[0]
    fns, comp = {}, {}
    for v, limit in variants.items():
        me.SCAN_MIN_WINDOW_BYTES = limit
        conv = functools.partial(ab._conv, layer, "grouped_elementwise")
        for kind in ab.KINDS:
            fns[v, kind], _, comp[v, kind] = ab.compiled(ab.step(conv, kind), *args)
    med = ab.interleaved_medians(fns, args, int(sys.argv[3]) if len(sys.argv) > 3 else 7)
    mib = 9 * x.size * 4 / 2**20 * (layer.k * layer.k / 9)
    for kind in ab.KINDS:
        e, s_ = med["eigen_dw", kind], med["scan_dw", kind]
        print(
            f"{name:10s} {dtype.name:8s} windows {mib:5.1f} MiB {kind:7s} "
            f"eigen_dw {e * 1e3:7.3f} ms ({comp['eigen_dw', kind]:.2f} s)  "
            f"scan_dw {s_ * 1e3:7.3f} ms ({comp['scan_dw', kind]:.2f} s)  {e / s_:.2f}x",
            flush=True,
        )
