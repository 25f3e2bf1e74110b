"""Methods in NCHW, 'auto' (GROUPED_ELEMENTWISE on grouped layers) against XLA_EIGEN and
TAPS_EIGEN_GRADIENTS (what 'auto' ran before), interleaved in one process.

    SHAPES=... JAX_NUM_CPU_DEVICES=1 python \\
        benchmarks/cpu-runs/2026-11-28-session17/nchw.py LAYERS DTYPE METHODS [ROUNDS]
"""

import functools
import sys

sys.path.insert(0, "benchmarks/cpu-runs/2026-11-28-session17")
import common


def conv(layer, method, x, w):
    """ab_methods' _conv in NCHW: a rule-only lowering runs as 'auto' with the rule
    answering it."""
    if method not in common.ab.RULE_ONLY:
        return common.b.conv(layer, "NCHW", method, x, w)
    from jconv import _auto, _conv2d

    saved = _auto.choose_method
    _auto.choose_method = _conv2d.choose_method = lambda spec: method
    try:
        return common.b.conv(layer, "NCHW", "auto", x, w)
    finally:
        _auto.choose_method = _conv2d.choose_method = saved


if __name__ == "__main__":
    common.register_shapes()
    common.compare(
        sys.argv[1], sys.argv[2], dict.fromkeys(sys.argv[3].split(","), lambda: None),
        lambda layer, m: functools.partial(conv, layer, m), layout="NCHW",
        rounds=int(sys.argv[4]) if len(sys.argv) > 4 else 7,
    )  # fmt: skip
