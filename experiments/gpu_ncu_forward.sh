#!/usr/bin/env bash
# Nsight Compute on the forward kernels of 'pallas' and of lax (cuDNN), for the ResNet
# layers where 'pallas' loses forward (BENCHMARKS.md, session 10: resnet7 563 against
# cuDNN's 731 TFLOP/s). For each layer, the kernels' speed of light, memory workload,
# occupancy, launch and warp-state sections, as ncu's text report. On a lent card:
#
#     OUT=runs/ncu bash experiments/gpu_ncu_forward.sh              # resnet7 resnet14
#     LAYERS="resnet28" OUT=runs/ncu bash experiments/gpu_ncu_forward.sh
#
# ncu needs --clock-control none (the device tool's METHOD.md: leave the clocks alone) and
# the Firecracker runtime (KINDS.md: on gVisor it cannot read the counters). The program it
# profiles is experiments/gpu_kernels.py --no-trace (JAX's profiler would claim CUPTI too);
# --launch-skip passes the compile's and warm-up's launches.

set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_ncu_forward}
PY=${PYTHON:-python3}
LAYERS=${LAYERS:-resnet7 resnet14}
KERNELS=${KERNELS:-'regex:jconv|xmma|cudnn|conv|gemm'}  # Triton's 'pallas' kernels, cuDNN's
LIMIT_S=${LIMIT_S:-150}  # per layer
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false

for layer in $LAYERS; do
    echo "== $layer" | tee -a "$OUT/ncu.log"
    timeout "$LIMIT_S" ncu --clock-control none --target-processes all \
        --kernel-name "$KERNELS" --launch-skip 2 --launch-count 8 \
        --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy \
        --section LaunchStats --section WarpStateStats \
        --export "$OUT/$layer" --force-overwrite \
        "$PY" -m experiments.gpu_kernels --layers "$layer" --methods pallas xla \
        --directions fwd --calls 3 --no-trace >>"$OUT/ncu.log" 2>&1
    echo "ncu exit $?" | tee -a "$OUT/ncu.log"
    if [ -f "$OUT/$layer.ncu-rep" ]; then
        ncu --import "$OUT/$layer.ncu-rep" --page details >"$OUT/$layer.txt" 2>&1
        grep -E "^  [^ ]|Duration|DRAM Throughput|L2 Cache Throughput|Compute \(SM\)|Achieved Occupancy|Registers Per" \
            "$OUT/$layer.txt" | head -80
    fi
done
