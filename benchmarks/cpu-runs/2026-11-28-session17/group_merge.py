import sys

import jax
import jax.numpy as jnp
from jax import lax

sys.path.insert(0, "benchmarks/cpu-runs/2026-11-28-session17")
from common import median_times

N, H, W, C, G = 4, 28, 28, 256, 32
cg = C // G
x = jax.random.normal(jax.random.key(0), (N, H, W, C))
w = jax.random.normal(jax.random.key(1), (3, 3, cg, C))


def conv(x, w, g):
    return lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=g
    )


def merged(x, w, b):
    # b groups per block: block-diagonal kernel (3,3,b*cg, C)
    wg = w.reshape(3, 3, cg, G // b, b, cg)  # (.., c, block, k, o)
    eye = jnp.eye(b, dtype=w.dtype)
    wb = jnp.einsum("hwcBko,jk->hwjcBko", wg, eye)  # (.., j(in group within block), c, block, k, o)
    wb = wb.reshape(3, 3, b * cg, C)
    return conv(x, wb, G // b)


ref = conv(x, w, G)
fns = {"g32": jax.jit(lambda x, w: conv(x, w, G))}
for b in (2, 4, 8, 32):
    fns[f"b{b}"] = jax.jit(lambda x, w, b=b: merged(x, w, b))
    print(b, float(jnp.max(jnp.abs(fns[f"b{b}"](x, w) - ref))))
ts = median_times(fns, (x, w), rounds=7, calls=5)
print("  ".join(f"{k} {v * 1e3:.3f} ms" for k, v in ts.items()))
