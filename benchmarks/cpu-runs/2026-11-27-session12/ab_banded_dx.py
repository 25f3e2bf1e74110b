"""Session 12: the band's input gradient with bfloat16 GEMM operands against the one before.

Run from the project root, with the module before the change checked out beside it:

    git worktree add old 48b3db9
    JAX_NUM_CPU_DEVICES=1 python benchmarks/cpu-runs/2026-11-27-session12/ab_banded_dx.py \
        vgg_in,lenet1 bfloat16

'auto' on each layer, its input gradient alone and the step with both gradients, with
BANDED_GRADIENTS and TAPS_BANDED_GRADIENTS given the old `_banded_dx` ('old') or this
checkout's ('new'). Each program is compiled ahead of time after jax.clear_caches(),
then timed in 15 rounds, every program once per round, each a batch of calls lasting
about 50 ms; medians.
"""

import functools
import importlib.util
import pathlib
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, ".")
sys.path.insert(0, str(pathlib.Path(__file__).parent))
from ab_methods import compiled, interleaved_medians, step

import jconv._method_banded as banded
from experiments import bench_conv as b

OLD_PATH = "old/jconv/_method_banded.py"
KINDS = ("dx", "fwd+bwd")


def _old_dx():
    spec = importlib.util.spec_from_file_location("old_banded", OLD_PATH)
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    return old._banded_dx


def main(layers: str, dtype_name: str) -> None:
    dtype = jnp.dtype(dtype_name)
    new = (banded.BANDED_GRADIENTS, banded.TAPS_BANDED_GRADIENTS)
    old_dx = _old_dx()
    variants = {"old": tuple(lowering._replace(dx=old_dx) for lowering in new), "new": new}
    for name in layers.split(","):
        layer = b.ALL_LAYERS[name]
        args = b.layer_arrays(layer, layer.batch_cpu, dtype, "NHWC", jax.random.key(0))
        conv = functools.partial(b.conv, layer, "NHWC", "auto")
        fns, results = {}, {}
        for variant, lowerings in variants.items():
            banded.BANDED_GRADIENTS, banded.TAPS_BANDED_GRADIENTS = lowerings  # read when traced
            for kind in KINDS:
                fns[(variant, kind)], results[(variant, kind)], _ = compiled(
                    step(conv, kind), *args
                )
        banded.BANDED_GRADIENTS, banded.TAPS_BANDED_GRADIENTS = new
        for kind in KINDS:
            pairs = zip(
                jax.tree.leaves(results[("new", kind)]), jax.tree.leaves(results[("old", kind)])
            )
            diffs = [
                float(jnp.max(jnp.abs(p.astype(jnp.float32) - q.astype(jnp.float32))))
                for p, q in pairs
            ]
            print(f"{name} {kind}: largest difference, new against old, per output: {diffs}")
        medians = interleaved_medians(fns, args)
        for kind in KINDS:
            o, n = (medians[(v, kind)] * 1e3 for v in variants)
            print(
                f"{name} {dtype.name} {kind}: old {o:.3f} ms  new {n:.3f} ms  old/new {o / n:.2f}x"
            )


if __name__ == "__main__":
    main(*sys.argv[1:])
