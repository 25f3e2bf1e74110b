"""elementwise_y in NCHW at stride 1 with more than one channel per group: each tap's pad
of x fused into the sum ('per_tap', the form before) against one padded copy of x
('shared'), 'auto' interleaved in one process. It ran against a patch of
jconv/_method_depthwise.py that read JCONV_SHARED; 'shared' is now the rule there.

    SHAPES=... JAX_NUM_CPU_DEVICES=1 python \
        benchmarks/cpu-runs/2026-11-28-session17/ab_shared.py LAYERS DTYPE LAYOUT
"""

import functools
import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, ".")
sys.path.insert(0, "benchmarks/cpu-runs/2026-11-28-session17")
import nchw
from grouped import ab, b

dtype, layout = jnp.dtype(sys.argv[2]), sys.argv[3]
for name in sys.argv[1].split(","):
    layer = b.ALL_LAYERS[name]
    args = b.layer_arrays(layer, layer.batch_cpu, dtype, layout, jax.random.key(0))
    fns, comp = {}, {}
    for v in ("per_tap", "shared"):
        os.environ["JCONV_SHARED"] = "1" if v == "shared" else ""
        conv = functools.partial(nchw._conv if layout == "NCHW" else ab._conv, layer, "auto")
        for kind in ab.KINDS:
            fns[v, kind], _, comp[v, kind] = ab.compiled(ab.step(conv, kind), *args)
    med = ab.interleaved_medians(fns, args, 7)
    for kind in ab.KINDS:
        p, s = med["per_tap", kind], med["shared", kind]
        print(
            f"{name:10s} {layout} {kind:7s} per_tap {p * 1e3:7.3f} ms "
            f"({comp['per_tap', kind]:.2f} s) shared {s * 1e3:7.3f} ms "
            f"({comp['shared', kind]:.2f} s) {p / s:.2f}x",
            flush=True,
        )
