"""elementwise_y in NCHW at stride 1 with more than one channel per group: each tap's pad
of x fused into the sum ('per_tap', the form before) against one padded copy of x
('shared'), 'auto' interleaved in one process. It ran against a patch of
jconv/_method_depthwise.py that read JCONV_SHARED; 'shared' is now the rule there.

    SHAPES=... JAX_NUM_CPU_DEVICES=1 python \\
        benchmarks/cpu-runs/2026-11-28-session17/ab_shared.py LAYERS DTYPE LAYOUT
"""

import functools
import os
import sys

sys.path.insert(0, "benchmarks/cpu-runs/2026-11-28-session17")
import common
import nchw


def _env(value):
    return lambda: os.environ.__setitem__("JCONV_SHARED", value)


if __name__ == "__main__":
    common.register_shapes()
    layout = sys.argv[3]
    conv = nchw.conv if layout == "NCHW" else common.ab._conv
    common.compare(
        sys.argv[1], sys.argv[2], {"per_tap": _env(""), "shared": _env("1")},
        lambda layer, _: functools.partial(conv, layer, "auto"), layout=layout,
    )  # fmt: skip
