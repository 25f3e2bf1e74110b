import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

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
ts = {k: [] for k in fns}
for _r in range(7):
    for k, f in fns.items():
        t = time.perf_counter()
        for _ in range(5):
            o = f(x, w)
        o.block_until_ready()
        ts[k].append((time.perf_counter() - t) / 5)
print("  ".join(f"{k} {np.median(v) * 1e3:.3f} ms" for k, v in ts.items()))
