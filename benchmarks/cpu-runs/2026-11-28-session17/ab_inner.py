"""'auto' with elementwise_y's windows as one padded x (before) and as inner parts,
products padded (JCONV_INNER; the patch that read it was reverted)."""

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
dtype = jnp.dtype(sys.argv[2])
layout = os.environ.get("LAYOUT", "NHWC")
for name in sys.argv[1].split(","):
    layer = b.ALL_LAYERS[name]
    args = b.layer_arrays(layer, layer.batch_cpu, dtype, layout, jax.random.key(0))
    conv = functools.partial(b.conv, layer, layout, "auto")
    fns, comp = {}, {}
    for env in ("", "1"):
        os.environ["JCONV_INNER"] = env
        for kind in ab.KINDS:
            fns[env, kind], _, comp[env, kind] = ab.compiled(ab.step(conv, kind), *args)
    med = ab.interleaved_medians(fns, args, int(sys.argv[3]) if len(sys.argv) > 3 else 11)
    for kind in ab.KINDS:
        o, n = med["", kind], med["1", kind]
        print(
            f"{name:9s} {dtype.name:8s} {layout} {kind:7s} "
            f"padded {o * 1e3:7.3f} ms ({comp['', kind]:.2f} s)  "
            f"inner {n * 1e3:7.3f} ms ({comp['1', kind]:.2f} s)  {o / n:.2f}x",
            flush=True,
        )
