"""bfloat16 widened lowerings: _cpu_rule narrowing with astype (before) against `narrowed`
(round_to, JCONV_NARROW; the patch that read it was reverted), interleaved.

    SHAPES=... JAX_NUM_CPU_DEVICES=1 python \\
        benchmarks/cpu-runs/2026-11-28-session17/ab_narrow.py LAYERS DTYPE METHOD
"""

import functools
import os
import sys

sys.path.insert(0, "benchmarks/cpu-runs/2026-11-28-session17")
import common


def _env(value):
    return lambda: os.environ.__setitem__("JCONV_NARROW", value)


if __name__ == "__main__":
    common.register_shapes()
    common.compare(
        sys.argv[1], sys.argv[2], {"astype": _env(""), "narrowed": _env("1")},
        lambda layer, _: functools.partial(common.ab._conv, layer, sys.argv[3]), rounds=9,
    )  # fmt: skip
