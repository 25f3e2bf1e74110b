"""lax's forward convolution (YNNPACK) against the tall form (XLA:CPU's Eigen kernel).

fwd and fwd+bwd (the tall input gradient, lax's kernel gradient), on shapes 'auto' ran
by lax before session 14: `eigen_grid.py SEED COUNT` draws COUNT of them,
`eigen_grid.py list "n,h,w,c,o,k,d,g;..."` takes a list. RULE=1 draws from the shapes the
final rule runs by XLA_EIGEN instead; BENCH=1 times bench_conv.py's loss (a fixed
cotangent) instead of one chained to y.
"""

import itertools
import os
import random
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jconv._auto import choose_method
from jconv._checks import check_conv_args

DN = ("NHWC", "HWIO", "NHWC")


def conv(x, k, pads, d, g):
    return lax.conv_general_dilated(
        x, k, (1, 1), pads, rhs_dilation=(d, d), dimension_numbers=DN, feature_group_count=g
    )


def tall(x, k, pads, d, g):
    (a, b), (c, e) = pads
    return lax.conv_general_dilated(
        x,
        k,
        (1, 1),
        ((a, b + 1), (c, e)),
        rhs_dilation=(d, d),
        dimension_numbers=DN,
        feature_group_count=g,
    )[:, :-1]


def variant(pads, d, g, kk):
    @jax.custom_vjp
    def f(x, k):
        return tall(x, k, pads, d, g)

    def fwd(x, k):
        return f(x, k), (x, k)

    def bwd(res, dy):
        x, k = res
        _, vjp_w = jax.vjp(lambda k: conv(x, k, pads, d, g), k)
        (dw,) = vjp_w(dy)
        kh, kw, cg, o = k.shape
        kf = (
            jnp.flip(k, (0, 1))
            .reshape(kh, kw, cg, g, o // g)
            .transpose(0, 1, 4, 3, 2)
            .reshape(kh, kw, o // g, g * cg)
        )
        e = (kk - 1) * d
        (a, b), (c, q) = pads
        dx = tall(dy, kf, ((e - a, e - b), (e - c, e - q)), d, g)
        return dx, dw

    f.defvjp(fwd, bwd)
    return f


# (n, h, w, c, o, k, d, g)
shapes = []
for c, o, k, hw, d, g in itertools.product(
    (8, 16, 32, 64, 128),
    (16, 32, 64, 128),
    (3, 5, 7),
    ((56, 56), (28, 28), (14, 14), (64, 256)),
    (1, 2),
    (1, 4),
):
    if g == 4 and (c < 32 or o < 32):
        continue
    h, w = hw
    n = max(1, round(2 * 56 * 56 * 64 * 64 / (h * w * c * o)))
    n = min(n, 64)
    spec = check_conv_args(
        (n, h, w, c),
        (k, k, c // g, o),
        x_dtype=jnp.float32,
        kernel_dtype=jnp.float32,
        padding="SAME",
        dilation=d,
        groups=g,
        layout="NHWC",
    )
    if os.environ.get("RULE"):  # the shapes the final rule runs by XLA_EIGEN, no groups
        if choose_method(spec) == "xla_eigen" and g == 1:
            shapes.append((n, h, w, c, o, k, d, g))
    elif choose_method(spec) == "xla" and max(c, o) > 16:  # what 'auto' ran by lax before
        shapes.append((n, h, w, c, o, k, d, g))
if sys.argv[1] == "list":
    shapes = [tuple(map(int, t.split(","))) for t in sys.argv[2].split(";")]
else:
    random.Random(int(sys.argv[1])).shuffle(shapes)
    shapes = shapes[: int(sys.argv[2])]
for n, h, w, c, o, kk, d, g in shapes:
    p = d * (kk - 1) // 2
    pads = ((p, p), (p, p))
    x = jnp.asarray(np.random.randn(n, h, w, c), jnp.float32)
    k = jnp.asarray(np.random.randn(kk, kk, c // g, o), jnp.float32)
    fs = {
        "lax": lambda x, k, pads=pads, d=d, g=g: conv(x, k, pads, d, g),
        "tall": variant(pads, d, g, kk),
    }
    comp = {}
    ct = jnp.asarray(np.random.randn(n, h, w, o), jnp.float32)
    for vn, f in fs.items():
        comp[vn, "fwd"] = jax.jit(f).lower(x, k).compile()
        if os.environ.get("BENCH"):  # bench_conv.py's loss: a fixed cotangent
            loss = lambda x, k, f=f, ct=ct: jnp.vdot(f(x, k), ct)
        else:  # the loss chained to y, as in a training step
            loss = lambda x, k, f=f: jnp.sum(f(x, k) ** 2) / 2
        comp[vn, "bwd"] = jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(x, k).compile()
    for a, b in zip(
        jax.tree.leaves(comp["tall", "bwd"](x, k)), jax.tree.leaves(comp["lax", "bwd"](x, k))
    ):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-3 * float(jnp.abs(b).max()))
    ts = {key: [] for key in comp}
    for _r in range(9):
        for key, cc in comp.items():
            jax.block_until_ready(cc(x, k))
            t = time.perf_counter()
            jax.block_until_ready(cc(x, k))
            ts[key].append(time.perf_counter() - t)
    m = {key: np.median(v) * 1e3 for key, v in ts.items()}
    print(
        f"n={n} {h}x{w} {c}->{o} k{kk} d{d} g{g}  "
        f"fwd lax {m['lax', 'fwd']:.2f} tall {m['tall', 'fwd']:.2f} = "
        f"{m['lax', 'fwd'] / m['tall', 'fwd']:.2f}x   "
        f"fwd+bwd lax {m['lax', 'bwd']:.2f} tall {m['tall', 'bwd']:.2f} = "
        f"{m['lax', 'bwd'] / m['tall', 'bwd']:.2f}x",
        flush=True,
    )
