#!/usr/bin/env bash
# One prepared GPU run for method='pallas' (jax 0.11 with CUDA, no network needed): correctness
# against lax, a trimmed tuning run, the benchmark, where the GPU's time goes. The steps' time
# limits (90 + 110 + 130 + 60 s by default) bound it to about 7 minutes.
#
#   bash experiments/gpu_pallas_check.sh            # results under $OUT (runs/gpu_pallas if unset)
#   QUICK=1 bash experiments/gpu_pallas_check.sh    # the lesson's check and five layers' bench, < 90 s
#
# 1. check:  experiments/check_pallas.py: 'pallas' against lax at HIGHEST on the host's CPU on
#            the bench layers, forward and both gradients, float32 and bfloat16 (batch 4),
#            and lax on the GPU against the same                               -> $OUT/check
# 2. tune:   experiments/tune_pallas.py --grid small, bfloat16, the goal's layers first,
#            stopped after its budget; winners in jconv's table format             -> $OUT/tune
# 3. bench:  experiments/bench_conv.py, 'pallas' against 'xla' (and torch) in bfloat16 at the
#            GPU batch sizes, with the tuned table if step 2 wrote one (else jconv's) -> $OUT/bench
# 4. kernels: experiments/gpu_kernels.py, the kernels 'pallas' and lax launch on the layers
#            where 'pallas' lost to cuDNN (session 6), and their times    -> $OUT/kernels.log
# 5. summary: experiments/gpu_pallas_summary.py, printed last.
#
# Options, as environment variables:
#   CHECK_LAYERS   the layers checked (default: every bench layer)
#   TUNE=0         no tuning step
#   BENCH_LAYERS   the layers timed (default: every bench layer)
#   BENCH_METHODS  the methods timed besides torch (default: pallas xla)
#   KERNEL_LAYERS  the layers profiled (default: resnet14 resnet7 depthwise; KERNELS=0: none)
#   CHECK_S, TUNE_S, BENCH_S, KERNELS_S   each step's time limit in seconds (90, 110, 130, 60)
#   QUICK=1        CHECK_LAYERS=lesson TUNE=0 BENCH_METHODS="auto pallas xla"
#                  BENCH_LAYERS="lesson resnet28 lenet2 stride2 conv1x1" CHECK_S=35 BENCH_S=50:
#                  the lesson's kernel gradient against the CPU's reference, and 'auto''s
#                  CUDA rule beside 'pallas' and lax, in at most 90 s of steps
#
# Every step runs under its own time limit (SIGINT, so that a step cut short ends cleanly); a
# failure is recorded in $OUT/steps.txt and the next step runs anyway. Each step writes its
# JSON as it goes, so a step cut short keeps its rows. The Python steps run as modules
# (python -m experiments.x) from the repository root.
set -u
cd "$(dirname "$0")/.."
if [ "${QUICK:-0}" = 1 ]; then
  CHECK_LAYERS=${CHECK_LAYERS:-lesson}
  TUNE=${TUNE:-0}
  BENCH_METHODS=${BENCH_METHODS:-auto pallas xla}
  BENCH_LAYERS=${BENCH_LAYERS:-lesson resnet28 lenet2 stride2 conv1x1}
  CHECK_S=${CHECK_S:-35}
  BENCH_S=${BENCH_S:-50}
fi
OUT="${OUT:-runs/gpu_pallas}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
PY="${PYTHON:-$(command -v python3 || command -v python)}"
: > "$OUT/steps.txt"

step() {  # step NAME TIMEOUT_S COMMAND...: run, log to $OUT/NAME.log, record status and time
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  echo "=== $name: $*"
  timeout -s INT --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  local status=ok
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then status="timed out after ${limit}s"
  elif [ $rc -ne 0 ]; then status="failed (exit $rc)"; fi
  printf '%-8s %-26s %4ds  log: %s\n' "$name" "$status" $((SECONDS - start)) "$OUT/$name.log" \
    | tee -a "$OUT/steps.txt"
  tail -n 4 "$OUT/$name.log"
}

layers() {  # layers FLAG "L1 L2 ...": the flag and the layers, or nothing for every layer
  [ -n "$2" ] && echo "$1 $2"
}

"$PY" -c "import jax, jconv; print(jax.__version__, jax.devices(), jconv.__file__)" \
  > "$OUT/environment.txt" 2>&1
cat "$OUT/environment.txt"

# shellcheck disable=SC2046  # the layer lists are meant to split into words
step check "${CHECK_S:-90}" "$PY" -m experiments.check_pallas --out "$OUT/check" \
  $(layers --layers "${CHECK_LAYERS:-}")

if [ "${TUNE:-1}" != 0 ]; then
  step tune "${TUNE_S:-110}" "$PY" -m experiments.tune_pallas --grid small --dtypes bfloat16 \
    --budget-s 70 --out "$OUT/tune" \
    --layers resnet28 resnet14 resnet56 resnet7 lesson stride2 conv1x1 lenet2 lenet1 depthwise
fi

table=()
if [ -s "$OUT/tune/table.json" ] && [ "$(cat "$OUT/tune/table.json")" != "{}" ]; then
  table=(--pallas-table "$OUT/tune/table.json")
fi
# shellcheck disable=SC2046,SC2086
step bench "${BENCH_S:-130}" "$PY" experiments/bench_conv.py --methods ${BENCH_METHODS:-pallas xla} \
  --dtypes bfloat16 --repeats 3 --target-s 0.1 ${table[@]+"${table[@]}"} --out "$OUT/bench" \
  $(layers --layers "${BENCH_LAYERS:-}")

if [ "${KERNELS:-1}" != 0 ] && [ "${QUICK:-0}" != 1 ]; then
  # shellcheck disable=SC2086  # the layer list is meant to split into words
  step kernels "${KERNELS_S:-60}" "$PY" -m experiments.gpu_kernels --methods pallas xla \
    --layers ${KERNEL_LAYERS:-resnet14 resnet7 depthwise}
fi

echo
"$PY" experiments/gpu_pallas_summary.py "$OUT" 2>&1 | tee "$OUT/summary.txt"
