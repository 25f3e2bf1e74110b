"""Methods on layers of the SHAPES environment variable, interleaved (session 12's
ab_methods.py), for each dtype: SHAPES="NAME=c,o,hw,n,groups[,k[,stride]];..." (3x3,
stride 1 by default).

    SHAPES=... JAX_NUM_CPU_DEVICES=1 python benchmarks/cpu-runs/2026-11-28-session18/grid.py \
        DTYPES METHODS [ROUNDS]
"""

import os
import sys

sys.path.insert(0, "benchmarks/cpu-runs/2026-11-28-session17")
import common


def main(dtypes: str, methods: str, rounds: str = "5") -> None:
    common.register_shapes()
    names = [item.split("=")[0] for item in os.environ["SHAPES"].split(";") if item]
    for dtype in dtypes.split(","):
        for name in names:
            common.ab.main(name, dtype, methods, rounds)


if __name__ == "__main__":
    main(*sys.argv[1:])
