#!/usr/bin/env bash
# Session 6, GPU call 2: device-timed tuning (bf16) and bench; pallas tests on the GPU if time is left.
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
W=${OUT:-/tmp/out}; mkdir -p $W
t0=$SECONDS
{ date; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv;
  python3 -c "import jax,triton,torch; print('jax', jax.__version__, 'triton', triton.__version__, 'torch', torch.__version__, jax.devices())"; } > $W/env.txt 2>&1
cat $W/env.txt
echo "== tune t=$((SECONDS-t0))"
timeout -s INT -k 10 ${TUNE_S:-215} python3 -m experiments.tune_pallas --grid full --dtypes bfloat16 --budget-s ${BUDGET_S:-165} \
  --repeats 3 --out /tmp/tune --layers resnet14 resnet7 resnet28 resnet56 depthwise conv1x1 stride2 lenet2 lenet1 lesson > $W/tune.txt 2>&1; echo "rc=$?"
cp /tmp/tune/tune.json $W/ 2>/dev/null
python3 - $W <<'PY'
import json, sys
from jconv._pallas_tuning import TABLE, table_to_json, table_from_json
prev = table_from_json(open(".devrun/table_call1.json").read())  # call 1's winners (lesson: host clock, valid there)
try:
    new = table_from_json(open("/tmp/tune/table.json").read())
except OSError:
    new = {}
merged = {**TABLE, **prev, **new}
open(sys.argv[1] + "/table.json", "w").write(table_to_json(merged))
print(len(new), "tuned classes,", len(merged), "in the merged table")
PY
grep -v "^$" $W/tune.txt | cut -c1-140 | tail -31
echo "== bench t=$((SECONDS-t0))"
timeout -s INT -k 10 ${BENCH_S:-170} python3 experiments/bench_conv.py --methods pallas xla --dtypes bfloat16 --repeats 5 \
  --target-s 0.05 --pallas-table $W/table.json --out /tmp/bench > $W/bench.txt 2>&1; echo "rc=$?"
cp /tmp/bench/bench.json $W/ 2>/dev/null
grep -E "^(lesson|resnet|conv1x1|lenet|depthwise|stride2)" $W/bench.txt | tail -60 | cut -c1-100
grep -iE "no GPU trace|no CUDA graph|Traceback|Error" $W/bench.txt | head -5
left=$((${TOTAL_S:-470} - (SECONDS-t0)))
echo "== pytest on the GPU t=$((SECONDS-t0)), ${left}s left"
if [ $left -gt 40 ]; then
  JAX_PLATFORMS=cuda,cpu timeout -s INT -k 5 $((left-10)) python3 -m pytest -p no:benchmark -p no:cacheprovider -q -n 8 -rfE \
    tests/test_pallas.py tests/test_auto.py > $W/pytest.txt 2>&1; echo "rc=$?"; tail -15 $W/pytest.txt
fi
echo "done t=$((SECONDS-t0))"
