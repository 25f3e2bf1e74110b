"""XLA_EIGEN's forward with lax's gradients, registered as a rule-only lowering, then ab_methods."""
import sys, importlib.util
sys.path.insert(0, ".")
from jconv import _conv2d, _method_xla_eigen as me
from jconv._lowering import Lowering, transpose_in_x, transpose_in_w
from jconv._conv_primitive import lowered_conv
from jconv._method_xla import conv_xla

PAIR = Lowering("eigen_fwd", me.eigen_y,
                lambda dy, w, spec: transpose_in_x(conv_xla, dy, w, spec),
                lambda x, dy, spec, ks: transpose_in_w(conv_xla, x, dy, spec, ks),
                guarded=frozenset())
_conv2d.RULE_LOWERINGS["eigen_fwd"] = lambda x, w, spec: lowered_conv(x, w, spec, PAIR)
from jconv import _method_banded as mb
BAND = Lowering("eigen_band", me.eigen_y, mb._banded_dx, mb._banded_dw, grouped=mb.TAPS, guarded=frozenset({"dx", "dw"}))
_conv2d.RULE_LOWERINGS["eigen_band"] = lambda x, w, spec: lowered_conv(x, w, spec, BAND)
spec = importlib.util.spec_from_file_location("ab", "benchmarks/cpu-runs/2026-11-27-session12/ab_methods.py")
ab = importlib.util.module_from_spec(spec); spec.loader.exec_module(ab)
ab.RULE_ONLY.update({"eigen_fwd", "eigen_band"})
from experiments import bench_conv as b
# extra shapes: NAME=c,o,hw,n[,width]
import os
for item in os.environ.get("SHAPES", "").split(";"):
    if item:
        name, rest = item.split("=")
        c, o, hw, n, *more = map(int, rest.split(","))
        k = more[1] if len(more) > 1 else 3
        b.ALL_LAYERS[name] = b.Layer(name, c, o, k, hw, 1, "SAME", 1, n, n, name, width=(more[0] if more else 0))
ab.main(*sys.argv[1:])
