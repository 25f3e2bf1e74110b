import functools
import sys

import jax
import jax.numpy as jnp
from jax import lax

sys.path.insert(0, "benchmarks/cpu-runs/2026-11-28-session17")
from common import median_times


def conv(x, w):
    return lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def padc(x, w, c2, o2):
    c, o = w.shape[2], w.shape[3]
    xp = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, c2 - c)))
    wp = jnp.pad(w, ((0, 0), (0, 0), (0, c2 - c), (0, o2 - o)))
    return conv(xp, wp)[..., :o]


shapes = [
    (64, 32, 32, 16, 16),
    (64, 32, 32, 16, 8),
    (8, 32, 32, 16, 16),
    (64, 16, 16, 16, 16),
    (2, 64, 256, 8, 16),
]
for n, h, wd, c, o in shapes:
    x = jax.random.normal(jax.random.key(0), (n, h, wd, c))
    w = jax.random.normal(jax.random.key(1), (3, 3, c, o))
    fns = {
        "lax": jax.jit(conv),
        "c17": jax.jit(functools.partial(padc, c2=17, o2=o)),
        "o17": jax.jit(functools.partial(padc, c2=c, o2=17)),
        "c32": jax.jit(functools.partial(padc, c2=32, o2=o)),
    }
    ref = fns["lax"](x, w)
    for f in fns.values():  # the same values as lax's
        assert float(jnp.max(jnp.abs(f(x, w) - ref))) < 1e-3
    ts = median_times(fns, (x, w), rounds=9, calls=10)
    print(
        (n, h, wd, c, o),
        "  ".join(f"{k} {v * 1e3:.3f}" for k, v in ts.items()),
        flush=True,
    )
