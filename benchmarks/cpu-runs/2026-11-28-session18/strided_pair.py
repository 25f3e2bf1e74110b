"""Strided float32 layers: 'taps' (what 'auto' runs) against lax's forward pass with 'taps''s
gradients ('lax_taps_grads', registered here as a rule-only lowering) and lax, interleaved.

    SHAPES=... JAX_NUM_CPU_DEVICES=1 python \
        benchmarks/cpu-runs/2026-11-28-session18/strided_pair.py DTYPE [ROUNDS]
"""

import os
import sys

sys.path.insert(0, "benchmarks/cpu-runs/2026-11-28-session17")
import common

from jconv._lowering import Lowering, member
from jconv._method_taps import TAPS
from jconv._method_xla import conv_xla


def _taps_dx(dy, w, spec):
    return member(TAPS, "dx", dy, w, spec, None)


def _taps_dw(x, dy, spec, sharding):
    return member(TAPS, "dw", x, dy, spec, sharding)


LAX_TAPS_GRADIENTS = Lowering(
    "lax_taps_grads", conv_xla, _taps_dx, _taps_dw, guarded=frozenset({"dx", "dw"})
)


def main(dtype: str, rounds: str = "7") -> None:
    common.register_shapes()
    common.register({"lax_taps_grads": LAX_TAPS_GRADIENTS})
    for item in os.environ["SHAPES"].split(";"):
        if item:
            common.ab.main(item.split("=")[0], dtype, "auto,lax_taps_grads,xla", rounds)


if __name__ == "__main__":
    main(*sys.argv[1:])
