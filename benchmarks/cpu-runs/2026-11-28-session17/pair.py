"""XLA_EIGEN's forward pass with lax's gradients ('eigen_fwd') and with the band's
('eigen_band'), registered as rule-only lowerings for session 12's ab_methods.py.

    SHAPES="NAME=c,o,hw,n[,width[,k]];..." JAX_NUM_CPU_DEVICES=1 python \
        benchmarks/cpu-runs/2026-11-28-session17/pair.py LAYERS DTYPE METHODS [ROUNDS]
"""

import os
import sys

sys.path.insert(0, "benchmarks/cpu-runs/2026-11-28-session17")
import common

from jconv import _method_banded as mb
from jconv import _method_xla_eigen as me
from jconv._lowering import Lowering, transpose_in_w, transpose_in_x
from jconv._method_xla import conv_xla


def _lax_dx(dy, w, spec):
    return transpose_in_x(conv_xla, dy, w, spec)


def _lax_dw(x, dy, spec, sharding):
    return transpose_in_w(conv_xla, x, dy, spec, sharding)


common.register(
    {
        "eigen_fwd": Lowering("eigen_fwd", me.eigen_y, _lax_dx, _lax_dw, guarded=frozenset()),
        "eigen_band": Lowering(
            "eigen_band",
            me.eigen_y,
            mb._banded_dx,
            mb._banded_dw,
            grouped=mb.TAPS,
            guarded=frozenset({"dx", "dw"}),
        ),
    }
)

for item in os.environ.get("SHAPES", "").split(";"):  # ungrouped: c,o,hw,n[,width[,k]]
    if item:
        name, rest = item.split("=")
        c, o, hw, n, *more = map(int, rest.split(","))
        width, k = (more + [0, 3][len(more) :])[:2]
        common.b.ALL_LAYERS[name] = common.b.Layer(
            name, c, o, k, hw, 1, "SAME", 1, n, n, name, width=width
        )

if __name__ == "__main__":
    common.ab.main(*sys.argv[1:])
