import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, ".")
from jax import lax

from jconv._checks import check_conv_args
from jconv._method_depthwise import elementwise_y

sys.path.insert(0, "benchmarks/cpu-runs/2026-11-28-session17")
from common import median_times

N, H, W, C, G = 4, 28, 28, 256, 32
cg = C // G
x = jax.random.normal(jax.random.key(0), (N, H, W, C))
w = jax.random.normal(jax.random.key(1), (3, 3, cg, C))
spec = check_conv_args(
    x.shape,
    w.shape,
    x_dtype=jnp.float32,
    kernel_dtype=jnp.float32,
    padding="SAME",
    layout="NHWC",
    groups=G,
)
w_oihw = w.transpose(3, 2, 0, 1)
ref = lax.conv_general_dilated(
    x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=G
)
fns = {
    "lax": jax.jit(
        lambda x, w: lax.conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=G
        )
    ),
    "elem": jax.jit(lambda x, w: elementwise_y(x, w.transpose(3, 2, 0, 1), spec)),
}
print(float(jnp.max(jnp.abs(fns["elem"](x, w) - ref))))
ts = median_times(fns, (x, w), rounds=7, calls=5)
print("  ".join(f"{k} {v * 1e3:.3f} ms" for k, v in ts.items()))
og = C // G
wt = w.reshape(3, 3, cg, G, og)  # (i,j,c,g,o)


def chan_major(x, w, out_minor_g=True):
    wt = w.reshape(3, 3, cg, G, og)
    xt = x.reshape(N, H, W, G, cg).transpose(0, 1, 2, 4, 3)  # (N,H,W,cg,G)
    xp = jnp.pad(xt, ((0, 0), (1, 1), (1, 1), (0, 0), (0, 0)))
    ys = []
    for o in range(og):
        y = 0
        for i in range(3):
            for j in range(3):
                for c in range(cg):
                    y = y + xp[:, i : i + H, j : j + W, c, :] * wt[i, j, c, :, o]
        ys.append(y)
    if out_minor_g:
        y = jnp.stack(ys, axis=3)  # (N,H,W,og,G)
        return y.transpose(0, 1, 2, 4, 3).reshape(N, H, W, C)
    return jnp.stack(ys, axis=-1).reshape(N, H, W, C)


fns2 = {
    "lax": fns["lax"],
    "elem": fns["elem"],
    "cmA": jax.jit(chan_major),
    "cmB": jax.jit(lambda x, w: chan_major(x, w, False)),
}
for k in ("cmA", "cmB"):
    print(
        k,
        float(jnp.max(jnp.abs(fns2[k](x, w) - ref))),
        fns2[k].lower(x, w).compile().as_text().count("fusion("),
    )
ts = median_times(fns2, (x, w), rounds=7, calls=5)
print("  ".join(f"{k} {v * 1e3:.3f} ms" for k, v in ts.items()))
