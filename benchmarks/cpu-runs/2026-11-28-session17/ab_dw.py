"""GROUPED_ELEMENTWISE with its kernel gradient by the scan (SCAN_MIN_WINDOW_BYTES 0)
against XLA_EIGEN's (huge), interleaved (grid3_scan_dw.txt; that run also printed the
windows' MiB, kh * kw * x's bytes, which common.compare does not).

    SHAPES=... KINDS=dw,fwd+bwd JAX_NUM_CPU_DEVICES=1 python \\
        benchmarks/cpu-runs/2026-11-28-session17/ab_dw.py LAYERS DTYPE [ROUNDS]
"""

import functools
import sys

sys.path.insert(0, "benchmarks/cpu-runs/2026-11-28-session17")
import common

from jconv import _method_xla_eigen as me


def _limit(value):
    return lambda: setattr(me, "SCAN_MIN_WINDOW_BYTES", value)


if __name__ == "__main__":
    common.register_shapes()
    common.compare(
        sys.argv[1], sys.argv[2], {"eigen_dw": _limit(1 << 62), "scan_dw": _limit(0)},
        lambda layer, _: functools.partial(common.ab._conv, layer, "grouped_elementwise"),
        rounds=int(sys.argv[3]) if len(sys.argv) > 3 else 7,
    )  # fmt: skip
