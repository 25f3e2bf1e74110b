"""elementwise_y's forward pass with XLA_EIGEN's gradients ('elem_eigen') on grouped layers, ab_methods."""
import importlib.util, os, sys
sys.path.insert(0, ".")
from jconv import _conv2d, _method_xla_eigen as me
from jconv._lowering import Lowering
from jconv._conv_primitive import lowered_conv
from jconv._method_depthwise import elementwise_y
E = Lowering("elem_eigen", elementwise_y, me._eigen_dx, me._eigen_dw, guarded=frozenset())
_conv2d.RULE_LOWERINGS["elem_eigen"] = lambda x, w, spec: lowered_conv(x, w, spec, E)
import dataclasses, numpy as np
from jconv._layouts import transposed_kernel
def _elem_dx(dy, w, spec):
    if spec.stride != (1, 1) or np.dtype(spec.out_dtype) != np.dtype(spec.dtype):
        return me._eigen_dx(dy, w, spec)
    mh, mw = spec.out_hw
    dx_spec = dataclasses.replace(spec, c=spec.o, o=spec.c, height=mh, width=mw, pads=spec.input_gradient_pads, preferred_element_type=None)
    return elementwise_y(dy, transposed_kernel(w, spec.groups, "NCHW"), dx_spec).astype(spec.dtype)
E2 = Lowering("elem2", elementwise_y, _elem_dx, me._eigen_dw, guarded=frozenset())
_conv2d.RULE_LOWERINGS["elem2"] = lambda x, w, spec: lowered_conv(x, w, spec, E2)
from jconv._lowering import member
from jconv._method_taps import TAPS
ET = Lowering("elem_taps", elementwise_y, lambda dy, w, spec: member(TAPS, "dx", dy, w, spec, None),
              lambda x, dy, spec, ks: member(TAPS, "dw", x, dy, spec, ks), guarded=frozenset())
_conv2d.RULE_LOWERINGS["elem_taps"] = lambda x, w, spec: lowered_conv(x, w, spec, ET)
spec = importlib.util.spec_from_file_location("ab", "benchmarks/cpu-runs/2026-11-27-session12/ab_methods.py")
ab = importlib.util.module_from_spec(spec); spec.loader.exec_module(ab)
ab.RULE_ONLY.update({"elem_eigen", "elem2", "elem_taps"})
from experiments import bench_conv as b
for item in os.environ.get("SHAPES", "").split(";"):
    if item:
        name, rest = item.split("=")
        c, o, hw, n, g, *k = map(int, rest.split(","))
        b.ALL_LAYERS[name] = b.Layer(name, c, o, k[0] if k else 3, hw, k[1] if len(k) > 1 else 1, "SAME", g, n, n, name)
ab.main(*sys.argv[1:])
