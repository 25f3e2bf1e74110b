"""Grouped and plain layers: XLA_EIGEN's members against 'taps' and lax (session 14).

`grouped_members.py CASES METHODS`, e.g. `g4_64_56,g32_resnext taps,E_tapsdw`.
"""

import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jconv._checks import check_conv_args
from jconv._conv_primitive import lowered_conv
from jconv._lowering import Lowering, member
from jconv._method_taps import TAPS
from jconv._method_xla import conv_xla
from jconv._method_xla_eigen import XLA_EIGEN, _eigen_dx, eigen_y

taps_dw = lambda x, dy, spec, sh: member(TAPS, "dw", x, dy, spec, sh)
taps_dx = lambda dy, w, spec: member(TAPS, "dx", dy, w, spec, None)
LOW = {
    "E_lax": XLA_EIGEN,
    "E_tapsdw": Lowering("e1", eigen_y, _eigen_dx, taps_dw, guarded=frozenset()),
    "E_tapsdxdw": Lowering("e2", eigen_y, taps_dx, taps_dw, guarded=frozenset()),
    "taps": TAPS,
}
cases = {
    "g4_64_56": (2, 56, 56, 64, 64, 3, 4),
    "g32_resnext": (4, 28, 28, 256, 256, 3, 32),
    "g8_128_14": (8, 14, 14, 128, 128, 3, 8),
    "g4_32_5x5": (8, 28, 28, 32, 64, 5, 4),
    "g2_128_28": (4, 28, 28, 128, 128, 3, 2),
    "wide16": (2, 64, 256, 16, 64, 3, 1),
    "dilated": (4, 28, 28, 64, 64, 3, 1),
    "c16_5": (8, 56, 56, 16, 64, 5, 1),
    "c64_7": (8, 28, 28, 64, 64, 7, 1),
    "c32_16_7": (8, 56, 56, 64, 16, 7, 1),
}
which = sys.argv[2].split(",")
for name in sys.argv[1].split(","):
    n, h, w, c, o, k, g = cases[name]
    dil = 2 if name == "dilated" else 1
    spec = check_conv_args(
        (n, h, w, c),
        (k, k, c // g, o),
        x_dtype=jnp.float32,
        kernel_dtype=jnp.float32,
        padding="SAME",
        groups=g,
        layout="NHWC",
        dilation=dil,
    )
    x = jnp.asarray(np.random.randn(n, h, w, c), jnp.float32)
    kk = jnp.asarray(np.random.randn(o, c // g, k, k), jnp.float32)
    fs = {
        m: (lambda x, kk, m=m, spec=spec: lowered_conv(x, kk, spec, LOW[m]))
        for m in which
        if m != "lax"
    }
    if "lax" in which:
        fs["lax"] = lambda x, kk, spec=spec: conv_xla(x, kk, spec)
    comp = {}
    for m, f in fs.items():
        comp[m, "fwd"] = jax.jit(f).lower(x, kk).compile()
        comp[m, "bwd"] = (
            jax.jit(
                jax.value_and_grad(lambda x, kk, f=f: jnp.sum(f(x, kk) ** 2) / 2, argnums=(0, 1))
            )
            .lower(x, kk)
            .compile()
        )
    ref = comp[which[0], "bwd"](x, kk)
    for m in fs:
        for a, b in zip(jax.tree.leaves(comp[m, "bwd"](x, kk)), jax.tree.leaves(ref)):
            np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-3 * float(jnp.abs(b).max()))
    ts = {key: [] for key in comp}
    for _r in range(int(os.environ.get("ROUNDS", 7))):
        for key, cc in comp.items():
            jax.block_until_ready(cc(x, kk))
            t = time.perf_counter()
            jax.block_until_ready(cc(x, kk))
            ts[key].append(time.perf_counter() - t)
    print(
        name, "  ".join(f"{m}/{d} {1e3 * np.median(v):.2f}" for (m, d), v in ts.items()), flush=True
    )
