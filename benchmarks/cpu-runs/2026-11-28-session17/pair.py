"""XLA_EIGEN's forward pass with lax's gradients ('eigen_fwd') and with the band's
('eigen_band'), registered as rule-only lowerings for session 12's ab_methods.py.

    SHAPES="NAME=c,o,hw,n[,width[,k]];..." JAX_NUM_CPU_DEVICES=1 python \
        benchmarks/cpu-runs/2026-11-28-session17/pair.py LAYERS DTYPE METHODS [ROUNDS]
"""

import importlib.util
import os
import sys

sys.path.insert(0, ".")
from experiments import bench_conv as b
from jconv import _conv2d
from jconv import _method_banded as mb
from jconv import _method_xla_eigen as me
from jconv._conv_primitive import lowered_conv
from jconv._lowering import Lowering, transpose_in_w, transpose_in_x
from jconv._method_xla import conv_xla


def _lax_dx(dy, w, spec):
    return transpose_in_x(conv_xla, dy, w, spec)


def _lax_dw(x, dy, spec, sharding):
    return transpose_in_w(conv_xla, x, dy, spec, sharding)


LOWERINGS = {
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
for name, lowering in LOWERINGS.items():
    _conv2d.RULE_LOWERINGS[name] = lambda x, w, spec, lowering=lowering: lowered_conv(
        x, w, spec, lowering
    )

spec = importlib.util.spec_from_file_location(
    "ab", "benchmarks/cpu-runs/2026-11-27-session12/ab_methods.py"
)
ab = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ab)
ab.RULE_ONLY.update(LOWERINGS)

for item in os.environ.get("SHAPES", "").split(";"):
    if item:
        name, rest = item.split("=")
        c, o, hw, n, *more = map(int, rest.split(","))
        width, k = (more + [0, 3][len(more) :])[:2]
        b.ALL_LAYERS[name] = b.Layer(name, c, o, k, hw, 1, "SAME", 1, n, n, name, width=width)

if __name__ == "__main__":
    ab.main(*sys.argv[1:])
