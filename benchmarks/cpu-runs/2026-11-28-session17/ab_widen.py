"""bfloat16 grouped layers: methods in bfloat16, and with '+wide' widened to float32 (it ran
against a JCONV_WIDEN switch in cpu_compute_dtype, since made permanent for
GROUPED_ELEMENTWISE), interleaved.

    SHAPES=... JAX_NUM_CPU_DEVICES=1 python \\
        benchmarks/cpu-runs/2026-11-28-session17/ab_widen.py LAYERS DTYPE METHODS
"""

import functools
import os
import sys

sys.path.insert(0, "benchmarks/cpu-runs/2026-11-28-session17")
import common


def _env(value):
    return lambda: os.environ.__setitem__("JCONV_WIDEN", value)


if __name__ == "__main__":
    common.register_shapes()
    labels = sys.argv[3].split(",")
    common.compare(
        sys.argv[1], sys.argv[2], {m: _env("1" if m.endswith("+wide") else "") for m in labels},
        lambda layer, m: functools.partial(common.ab._conv, layer, m.removesuffix("+wide")),
    )  # fmt: skip
