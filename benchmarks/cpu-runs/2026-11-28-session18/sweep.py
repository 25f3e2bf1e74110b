"""'auto' against lax on layers drawn at random (seeded), outside the bench's table: does
the rule generalize? Each layer: forward and forward+backward, interleaved (session 12's
ab_methods.py), in float32 and bfloat16.

    JAX_NUM_CPU_DEVICES=1 python benchmarks/cpu-runs/2026-11-28-session18/sweep.py \
        SEED COUNT [ROUNDS] [DTYPES]
"""

import sys

import numpy as np

sys.path.insert(0, "benchmarks/cpu-runs/2026-11-28-session17")
import common

ab, b = common.ab, common.b

CHANNELS = (3, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
SIDES = (7, 10, 14, 17, 24, 28, 32, 48, 56, 64, 112)
TARGET_FLOP = 2e8  # a batch that makes the forward pass about this many flops


def draw(rng: np.random.Generator, i: int) -> b.Layer:
    """One layer: a 3x3 most often, some 1x1, 5x5, 7x7; stride 2 a quarter of the time;
    depthwise or grouped a sixth of the time each."""
    k = int(rng.choice([1, 3, 3, 3, 5, 7]))
    stride = 2 if rng.random() < 0.25 else 1
    c, o = (int(rng.choice(CHANNELS)) for _ in range(2))
    hw = int(rng.choice(SIDES))
    kind = rng.random()
    groups = 1
    if kind < 1 / 6 and c > 3:
        groups, o = c, c  # depthwise
    elif kind < 2 / 6 and c >= 16 and o >= 16:
        groups = int(rng.choice([g for g in (2, 4, 8, 16, 32) if c % g == 0 and o % g == 0]))
    out = -(-hw // stride)
    flop = 2 * out * out * o * (c // groups) * k * k
    n = int(max(1, min(64, round(TARGET_FLOP / flop))))
    name = f"r{i}_{c}x{o}_{hw}_k{k}s{stride}g{groups}n{n}"
    return b.Layer(name, c, o, k, hw, stride, "SAME", groups, n, n, name)


def main(seed: str, count: str, rounds: str = "5", dtypes: str = "float32,bfloat16") -> None:
    rng = np.random.default_rng(int(seed))
    layers = [draw(rng, i) for i in range(int(count))]
    for layer in layers:
        b.ALL_LAYERS[layer.name] = layer
    for dtype in dtypes.split(","):
        for layer in layers:
            ab.main(layer.name, dtype, "auto,xla", rounds)


if __name__ == "__main__":
    main(*sys.argv[1:])
