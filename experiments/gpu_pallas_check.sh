#!/usr/bin/env bash
# One prepared GPU run for method='pallas' (jax 0.11 with CUDA, no network needed): correctness
# against lax, a trimmed tuning run, the benchmark. The steps' timeouts (90 + 110 + 130 s) bound
# it to about 6 minutes.
#
#   bash experiments/gpu_pallas_check.sh            # results under $OUT (runs/gpu_pallas if unset)
#
# 1. check:  experiments/check_pallas.py: 'pallas' against lax at HIGHEST on every bench layer,
#            forward and both gradients, float32 and bfloat16 (batch 4)          -> $OUT/check
# 2. tune:   experiments/tune_pallas.py --grid small, bfloat16, the goal's layers first,
#            stopped after its budget; winners in jconv's table format             -> $OUT/tune
# 3. bench:  experiments/bench_conv.py, 'pallas' against 'xla' (and torch) on the suite in
#            bfloat16 at the GPU batch sizes, with the tuned table if step 2 wrote one -> $OUT/bench
# 4. summary: experiments/gpu_pallas_summary.py, printed last.
#
# Every step runs under its own timeout; a failure is recorded in $OUT/steps.txt and the next
# step runs anyway. Each step writes its JSON as it goes, so a step cut short keeps its rows.
set -u
cd "$(dirname "$0")/.."
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
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  local status=ok
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then status="timed out after ${limit}s"
  elif [ $rc -ne 0 ]; then status="failed (exit $rc)"; fi
  printf '%-8s %-26s %4ds  log: %s\n' "$name" "$status" $((SECONDS - start)) "$OUT/$name.log" \
    | tee -a "$OUT/steps.txt"
  tail -n 4 "$OUT/$name.log"
}

"$PY" -c "import jax, jconv; print(jax.__version__, jax.devices(), jconv.__file__)" \
  > "$OUT/environment.txt" 2>&1
cat "$OUT/environment.txt"

step check 90 "$PY" experiments/check_pallas.py --out "$OUT/check"

step tune 110 "$PY" experiments/tune_pallas.py --grid small --dtypes bfloat16 --budget-s 70 \
  --layers resnet28 resnet14 resnet56 resnet7 lesson stride2 conv1x1 lenet2 lenet1 depthwise \
  --out "$OUT/tune"

table=()
if [ -s "$OUT/tune/table.json" ] && [ "$(cat "$OUT/tune/table.json")" != "{}" ]; then
  table=(--pallas-table "$OUT/tune/table.json")
fi
step bench 130 "$PY" experiments/bench_conv.py --methods pallas xla --dtypes bfloat16 \
  --repeats 3 --target-s 0.1 ${table[@]+"${table[@]}"} --out "$OUT/bench"

echo
"$PY" experiments/gpu_pallas_summary.py "$OUT" 2>&1 | tee "$OUT/summary.txt"
