#!/usr/bin/env bash
# Session 6, GPU call 1: per-kernel profile, full-grid tuning (bf16), bench with the tuned table.
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
W=${OUT:-/tmp/out}; mkdir -p $W
t0=$SECONDS
{ date; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv;
  python3 -c "import jax,triton,torch; print('jax', jax.__version__, 'triton', triton.__version__, 'torch', torch.__version__, jax.devices())"; } > $W/env.txt 2>&1
cat $W/env.txt
echo "== profile t=$((SECONDS-t0))"
timeout -s INT -k 5 ${PROF_S:-75} python3 .devrun/gpu_profile.py /tmp/prof resnet14 resnet7 depthwise lesson > $W/profile.txt 2>&1; echo "rc=$?"
grep -E "busy|PLANE" $W/profile.txt | cut -c1-300
echo "== tune t=$((SECONDS-t0))"
timeout -s INT -k 10 ${TUNE_S:-200} python3 -m experiments.tune_pallas --grid full --dtypes bfloat16 --budget-s ${BUDGET_S:-150} \
  --repeats 3 --out /tmp/tune --layers resnet14 resnet7 resnet56 lesson depthwise resnet28 stride2 conv1x1 lenet2 lenet1 > $W/tune.txt 2>&1; echo "rc=$?"
cp /tmp/tune/tune.json $W/ 2>/dev/null
python3 - $W <<'PY'
import json, sys
from jconv._pallas_tuning import TABLE, table_to_json, table_from_json
try:
    new = table_from_json(open("/tmp/tune/table.json").read())
except OSError:
    new = {}
merged = {**TABLE, **new}
open(sys.argv[1] + "/table.json", "w").write(table_to_json(merged))
print(len(new), "tuned classes,", len(merged), "in the merged table")
PY
grep -v "^$" $W/tune.txt | cut -c1-140 | tail -32
echo "== bench t=$((SECONDS-t0))"
timeout -s INT -k 10 ${BENCH_S:-140} python3 experiments/bench_conv.py --methods pallas xla --dtypes bfloat16 --repeats 5 \
  --target-s 0.1 --pallas-table $W/table.json --out /tmp/bench > $W/bench.txt 2>&1; echo "rc=$?"
cp /tmp/bench/bench.json $W/ 2>/dev/null
grep -E "pallas|xla|torch" $W/bench.txt | grep -E "^(lesson|resnet|conv1x1|lenet|depthwise|stride2)" | tail -60 | cut -c1-100
echo "done t=$((SECONDS-t0))"
