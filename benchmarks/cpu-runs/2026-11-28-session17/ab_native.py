"""bfloat16 grouped layers: methods as 'auto' runs them, and with '+native' in bfloat16
itself (jconv/_conv2d.py's cpu_compute_dtype patched to widen nothing), interleaved.

    SHAPES=... JAX_NUM_CPU_DEVICES=1 python \\
        benchmarks/cpu-runs/2026-11-28-session17/ab_native.py LAYERS DTYPE METHODS
"""

import functools
import sys

sys.path.insert(0, "benchmarks/cpu-runs/2026-11-28-session17")
import common

from jconv import _conv2d

WIDENING = _conv2d.cpu_compute_dtype


def _widening(native):
    def setup():
        _conv2d.cpu_compute_dtype = (lambda spec, method: None) if native else WIDENING

    return setup


if __name__ == "__main__":
    common.register_shapes()
    labels = sys.argv[3].split(",")
    common.compare(
        sys.argv[1], sys.argv[2], {m: _widening(m.endswith("+native")) for m in labels},
        lambda layer, m: functools.partial(common.ab._conv, layer, m.removesuffix("+native")),
    )  # fmt: skip
