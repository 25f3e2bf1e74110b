"""bfloat16 grouped layers: xla_eigen, taps_eigen_gradients, grouped_elementwise in bfloat16,
and widened to float32 ('+native': cpu_compute_dtype patched to None)."""

import functools
import importlib.util
import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, ".")
from experiments import bench_conv as b
from jconv import _conv2d

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
_orig = _conv2d.cpu_compute_dtype


def _patch(native):
    _conv2d.cpu_compute_dtype = (lambda spec, method: None) if native else _orig


dtype = jnp.dtype(sys.argv[2])
names = sys.argv[3].split(",")
for name in sys.argv[1].split(","):
    layer = b.ALL_LAYERS[name]
    args = b.layer_arrays(layer, layer.batch_cpu, dtype, "NHWC", jax.random.key(0))
    fns, comp = {}, {}
    for m in names:
        _patch(m.endswith("+native"))
        conv = functools.partial(ab._conv, layer, m.replace("+native", ""))
        for kind in ab.KINDS:
            fns[m, kind], _, comp[m, kind] = ab.compiled(ab.step(conv, kind), *args)
    _patch(False)
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
