"""GPU check of the serial split-K kernel gradient: counters, determinism, agreement."""

import dataclasses
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments.bench_conv import LAYERS
from experiments.tune_pallas import layer_geometry
from jconv import _pallas_triton
from jconv._pallas_tuning import config_for

layers = sys.argv[1:] or ["resnet14", "resnet7", "resnet28", "resnet56", "depthwise", "lesson"]
ok_all = True
for name in layers:
    layer = LAYERS[name]
    geo = layer_geometry(layer, layer.batch_gpu)
    k1, k2 = jax.random.split(jax.random.key(0))
    x = jax.random.normal(k1, geo.x_shape(), jnp.bfloat16)
    dy = jax.random.normal(k2, geo.y_shape(), jnp.bfloat16)
    base = config_for("w", geo, jnp.bfloat16)
    ref_cfg = dataclasses.replace(base, split_k=1, serial=False)
    ref = jax.jit(
        lambda x, dy, geo=geo, c=ref_cfg: _pallas_triton.kernel_grad_sums(x, dy, geo, config=c)[0][
            0
        ]
    )(x, dy)
    ref = np.asarray(ref, np.float64)
    scale = np.abs(ref).max()
    for splits in (2, 4, 8, 16, 32):
        cfg = dataclasses.replace(base, split_k=splits, serial=True)
        f = jax.jit(
            lambda x, dy, cfg=cfg, geo=geo: _pallas_triton.kernel_grad_sums(x, dy, geo, config=cfg)
        )
        t0 = time.time()
        outs = [f(x, dy) for _ in range(12)]
        jax.block_until_ready(outs)
        first = np.asarray(outs[0][0][0])
        same = all(np.array_equal(first, np.asarray(o[0][0])) for o in outs[1:])
        counts_ok = all(bool((np.asarray(o[1]) == splits).all()) for o in outs)
        err = np.abs(first - ref).max() / scale
        ok = same and counts_ok and err < 1e-3  # float32 sums in another order
        ok_all &= ok
        print(
            f"{name:10s} split {splits:3d} {cfg}  identical_runs={same} counters_ok={counts_ok} "
            f"rel_err_vs_split1={err:.2e} {'OK' if ok else 'BAD'} ({time.time() - t0:.1f}s)",
            flush=True,
        )
print("ALL OK" if ok_all else "SOME BAD")
sys.exit(0 if ok_all else 1)
