"""GROUPED_ELEMENTWISE's scan kernel gradient with the rows a step capped (MAX_TERMS 72,
the default then, 18, 9), 'auto' interleaved.

    SHAPES=... KINDS=dw,fwd+bwd JAX_NUM_CPU_DEVICES=1 python \\
        benchmarks/cpu-runs/2026-11-28-session17/ab_rows.py LAYERS DTYPE TERMS[,TERMS...]
"""

import functools
import sys

sys.path.insert(0, "benchmarks/cpu-runs/2026-11-28-session17")
import common

from jconv import _method_depthwise as md


def _cap(terms):
    def setup():
        md._row_block = lambda mh, taps, *_: md._divisor_at_most(mh, terms // taps)

    return setup


if __name__ == "__main__":
    common.register_shapes()
    variants = {f"terms {t}": _cap(int(t)) for t in sys.argv[3].split(",")}
    common.compare(
        sys.argv[1], sys.argv[2], variants,
        lambda layer, _: functools.partial(common.ab._conv, layer, "auto"),
    )  # fmt: skip
