"""Rule-only lowerings for grouped layers, registered for session 12's ab_methods.py:
'elem_eigen' (elementwise_y's forward pass, XLA_EIGEN's gradients), 'elem2' (the input
gradient elementwise too), 'elem_taps' (elementwise forward, 'taps''s gradients); the
library's own 'grouped_elementwise' once it landed.

    SHAPES="NAME=c,o,hw,n,groups[,k[,stride]];..." JAX_NUM_CPU_DEVICES=1 python \
        benchmarks/cpu-runs/2026-11-28-session17/grouped.py LAYERS DTYPE METHODS [ROUNDS]
"""

import dataclasses
import importlib.util
import os
import sys

import numpy as np

sys.path.insert(0, ".")
from experiments import bench_conv as b
from jconv import _conv2d
from jconv import _method_xla_eigen as me
from jconv._conv_primitive import lowered_conv
from jconv._layouts import transposed_kernel
from jconv._lowering import Lowering, member
from jconv._method_depthwise import elementwise_y
from jconv._method_taps import TAPS


def _elem_dx(dy, w, spec):
    """The first form of the elementwise input gradient (no bound on its products)."""
    if spec.stride != (1, 1) or np.dtype(spec.out_dtype) != np.dtype(spec.dtype):
        return me._eigen_dx(dy, w, spec)
    mh, mw = spec.out_hw
    dx_spec = dataclasses.replace(
        spec, c=spec.o, o=spec.c, height=mh, width=mw, pads=spec.input_gradient_pads,
        preferred_element_type=None,
    )  # fmt: skip
    w_t = transposed_kernel(w, spec.groups, "NCHW")
    return elementwise_y(dy, w_t, dx_spec).astype(spec.dtype)


def _taps_dx(dy, w, spec):
    return member(TAPS, "dx", dy, w, spec, None)


def _taps_dw(x, dy, spec, sharding):
    return member(TAPS, "dw", x, dy, spec, sharding)


LOWERINGS = {
    "elem_eigen": Lowering("elem_eigen", elementwise_y, me._eigen_dx, me._eigen_dw),
    "elem2": Lowering("elem2", elementwise_y, _elem_dx, me._eigen_dw),
    "elem_taps": Lowering("elem_taps", elementwise_y, _taps_dx, _taps_dw),
}
for name, lowering in LOWERINGS.items():
    lowering = lowering._replace(guarded=frozenset())
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
        c, o, hw, n, g, *k = map(int, rest.split(","))
        kernel, stride = (k + [3, 1][len(k) :])[:2]
        b.ALL_LAYERS[name] = b.Layer(name, c, o, kernel, hw, stride, "SAME", g, n, n, name)

if __name__ == "__main__":
    ab.main(*sys.argv[1:])
