"""'auto' with elementwise_y's windows as one padded x (before) and as inner parts,
products padded (JCONV_INNER; the patch that read it was reverted), interleaved.

    LAYOUT=NHWC KINDS=fwd,dx,fwd+bwd JAX_NUM_CPU_DEVICES=1 python \\
        benchmarks/cpu-runs/2026-11-28-session17/ab_inner.py LAYERS DTYPE [ROUNDS]
"""

import functools
import os
import sys

sys.path.insert(0, "benchmarks/cpu-runs/2026-11-28-session17")
import common


def _env(value):
    return lambda: os.environ.__setitem__("JCONV_INNER", value)


if __name__ == "__main__":
    layout = os.environ.get("LAYOUT", "NHWC")
    common.compare(
        sys.argv[1], sys.argv[2], {"padded": _env(""), "inner": _env("1")},
        lambda layer, _: functools.partial(common.b.conv, layer, layout, "auto"),
        layout=layout, rounds=int(sys.argv[3]) if len(sys.argv) > 3 else 11,
    )  # fmt: skip
