"""'winograd''s tiles in (N, th, tw, C) order against (th, tw, N, C) (`_tile_major`), by
TILE_MAJOR_MAX_TILES (0: never; 64: the rule), interleaved in one process.

    JAX_NUM_CPU_DEVICES=1 python benchmarks/cpu-runs/2026-11-28-session18/ab_tile_order.py \
        LAYERS DTYPE [ROUNDS] [METHOD] [LAYOUT]
"""

import sys

sys.path.insert(0, "benchmarks/cpu-runs/2026-11-28-session17")
import common

from jconv import _method_winograd


def setter(tiles: int):
    def setup():
        _method_winograd.TILE_MAJOR_MAX_TILES = tiles

    return setup


def main(layers, dtype, rounds="7", method="winograd", layout="NHWC") -> None:
    conv_for = lambda layer, label: lambda x, w: common.b.conv(layer, layout, method, x, w)
    variants = {"batch_major": setter(0), "tile_major": setter(64)}
    common.compare(layers, dtype, variants, conv_for, layout=layout, rounds=int(rounds))


if __name__ == "__main__":
    main(*sys.argv[1:])
