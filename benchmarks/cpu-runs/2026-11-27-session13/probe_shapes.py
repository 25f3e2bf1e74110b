"""ab_methods.py (session 12) on shapes outside bench_conv.py's suite: 2 or 3 input channels.

    JAX_NUM_CPU_DEVICES=1 KINDS=fwd,fwd+bwd python \
        benchmarks/cpu-runs/2026-11-27-session13/probe_shapes.py \
        LAYER[,LAYER...] DTYPE METHOD[,METHOD...] [BATCHES]

PROBES are added to bench_conv's layers, then ab_methods.main runs as it does on its own
(methods interleaved batch by batch in one process, rule-only lowerings accepted).
"""

import sys

sys.path.insert(0, ".")
sys.path.insert(0, "benchmarks/cpu-runs/2026-11-27-session12")
from experiments import bench_conv as b

L = b.Layer
PROBES = [
    L("c3k5o24", 3, 24, 5, 56, 1, "SAME", 1, 8, 64, "3 -> 24 5x5 at 56x56"),
    L("c2k5o16", 2, 16, 5, 64, 1, "SAME", 1, 8, 64, "2 -> 16 5x5 at 64x64"),
    L("c3k7o32", 3, 32, 7, 64, 1, "SAME", 1, 4, 64, "3 -> 32 7x7 at 64x64"),
    L("c2k3o32", 2, 32, 3, 64, 1, "SAME", 1, 8, 64, "2 -> 32 3x3 at 64x64"),
    L("c3k3o8", 3, 8, 3, 128, 1, "SAME", 1, 4, 64, "3 -> 8 3x3 at 128x128"),
    L("c3k3o32s", 3, 32, 3, 32, 1, "SAME", 1, 64, 64, "3 -> 32 3x3 at 32x32, N=64"),
    L("c3k3o64", 3, 64, 3, 56, 1, "SAME", 1, 8, 64, "3 -> 64 3x3 at 56x56"),
    L("mobile_in", 3, 32, 3, 224, 2, "SAME", 1, 2, 64, "MobileNet stem: 3 -> 32 3x3 s2"),
    L("c3s2o16", 3, 16, 3, 112, 2, "SAME", 1, 8, 64, "3 -> 16 3x3 s2 at 112x112"),
    L("c2s2o32", 2, 32, 3, 64, 2, 1, 1, 16, 64, "2 -> 32 3x3 s2 at 64x64, N=16"),
    L("c3s3o24", 3, 24, 3, 96, 3, 0, 1, 4, 64, "3 -> 24 3x3 s3 at 96x96"),
    L("c3s2o64", 3, 64, 3, 224, 2, 1, 1, 2, 64, "3 -> 64 3x3 s2 at 224x224"),
    L("stem7_112", 3, 64, 7, 112, 2, 3, 1, 8, 64, "3 -> 64 7x7 s2 at 112x112, N=8"),
    L("c3k5s2o32", 3, 32, 5, 128, 2, 2, 1, 4, 64, "3 -> 32 5x5 s2 at 128x128"),
    L("c1k7s2o32", 1, 32, 7, 128, 2, 3, 1, 4, 64, "1 -> 32 7x7 s2 at 128x128"),
    L("c4k5s2o48", 4, 48, 5, 96, 2, 2, 1, 4, 64, "4 -> 48 5x5 s2 at 96x96"),
    L("c1k3s2o32", 1, 32, 3, 128, 2, 1, 1, 8, 64, "1 -> 32 3x3 s2 at 128x128"),
    L("c1k5s2o16", 1, 16, 5, 128, 2, 2, 1, 8, 64, "1 -> 16 5x5 s2 at 128x128"),
    L("c1k3s2o64", 1, 64, 3, 128, 2, 1, 1, 8, 64, "1 -> 64 3x3 s2 at 128x128"),
    L("c4k3o32w", 4, 32, 3, 64, 1, "SAME", 1, 4, 64, "4 -> 32 3x3 on 64x256", width=256),
    L("c8k3o32", 8, 32, 3, 16, 1, "SAME", 1, 32, 64, "8 -> 32 3x3 at 16x16, N=32"),
    L("c4k3o16", 4, 16, 3, 56, 1, "SAME", 1, 8, 64, "4 -> 16 3x3 at 56x56"),
    L("c6k3o24", 6, 24, 3, 32, 1, "SAME", 1, 16, 64, "6 -> 24 3x3 at 32x32"),
]
for p in PROBES:
    b.ALL_LAYERS[p.name] = p

import ab_methods  # noqa: E402

if __name__ == "__main__":
    ab_methods.main(*sys.argv[1:])
