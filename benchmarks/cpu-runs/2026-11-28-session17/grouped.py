"""Rule-only lowerings for grouped layers, registered for session 12's ab_methods.py:
'elem_eigen' (elementwise_y's forward pass, XLA_EIGEN's gradients), 'elem2' (the input
gradient elementwise too), 'elem_taps' (elementwise forward, 'taps''s gradients); the
library's own 'grouped_elementwise' once it landed.

    SHAPES="NAME=c,o,hw,n,groups[,k[,stride]];..." JAX_NUM_CPU_DEVICES=1 python \
        benchmarks/cpu-runs/2026-11-28-session17/grouped.py LAYERS DTYPE METHODS [ROUNDS]
"""

import sys

sys.path.insert(0, "benchmarks/cpu-runs/2026-11-28-session17")
import common

from jconv import _method_xla_eigen as me
from jconv._lowering import Lowering, member
from jconv._method_depthwise import elementwise_y
from jconv._method_taps import TAPS

ab, b = common.ab, common.b


def _elem_dx(dy, w, spec):
    """The first form of the elementwise input gradient (no bound on its products)."""
    if spec.stride != (1, 1) or not me._one_dtype(spec):
        return me._eigen_dx(dy, w, spec)
    return me._correlated_dy(elementwise_y, dy, w, spec)


def _taps_dx(dy, w, spec):
    return member(TAPS, "dx", dy, w, spec, None)


def _taps_dw(x, dy, spec, sharding):
    return member(TAPS, "dw", x, dy, spec, sharding)


LOWERINGS = {
    name: Lowering(name, elementwise_y, dx, dw, guarded=frozenset())
    for name, dx, dw in (
        ("elem_eigen", me._eigen_dx, me._eigen_dw),
        ("elem2", _elem_dx, me._eigen_dw),
        ("elem_taps", _taps_dx, _taps_dw),
    )
}
common.register(LOWERINGS)
common.register_shapes()

if __name__ == "__main__":
    ab.main(*sys.argv[1:])
