"""The bench's fwd+bwd step: value_and_grad of vdot(y, ct) (before) against the VJP
(y, dx, dw given ct)."""

import functools
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, "benchmarks/cpu-runs/2026-11-28-session17")
from common import ab, b

dtype = jnp.dtype(sys.argv[2])
method = sys.argv[3] if len(sys.argv) > 3 else "auto"
for name in sys.argv[1].split(","):
    layer = b.ALL_LAYERS[name]
    args = b.layer_arrays(layer, layer.batch_cpu, dtype, "NHWC", jax.random.key(0))
    conv = functools.partial(b.conv, layer, "NHWC", method)

    def old(x, w, ct, conv=conv):
        return jax.value_and_grad(
            lambda x, w: jnp.vdot(conv(x, w).astype(jnp.float32), ct), (0, 1)
        )(x, w)

    def new(x, w, ct, conv=conv):
        y, vjp = jax.vjp(conv, x, w)
        return y, vjp(ct)

    fns = {}
    for k, f in (("vdot", old), ("vjp", new)):
        fns[k], _, c = ab.compiled(f, *args)
    med = ab.interleaved_medians(fns, args, 11)
    print(
        f"{name:9s} {dtype.name} {method}: vdot {med['vdot'] * 1e3:.3f} ms  "
        f"vjp {med['vjp'] * 1e3:.3f} ms  ({med['vdot'] / med['vjp']:.2f}x)",
        flush=True,
    )
