#!/usr/bin/env bash
# Session 10, GPU call 3: resnet14's kernel gradient with two more tap-group tilings, then the
# whole bench suite with the merged table (calls 1 and 2 and this).
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
W=${OUT:-/tmp/out}; mkdir -p $W
t0=$SECONDS
echo "== tune w resnet14 t=$((SECONDS-t0))"
timeout -s INT -k 10 ${TUNE_W_S:-60} python3 -m experiments.tune_pallas --grid full --products w --dtypes bfloat16 \
  --budget-s ${TUNE_W_BUDGET:-40} --repeats 3 --out $W/tunew --layers resnet14 > $W/tunew.txt 2>&1; echo "rc=$?"
grep default $W/tunew.txt | cut -c1-200
python3 - $W <<'PY'
import json, sys, os
w = sys.argv[1]; t = json.load(open(".devrun/table_c2.json"))
p = os.path.join(w, "tunew", "table.json")
if os.path.exists(p): t.update(json.load(open(p)))
json.dump(t, open(os.path.join(w, "table.json"), "w"), indent=1, sort_keys=True)
print(len(t), "entries merged")
PY
echo "== bench t=$((SECONDS-t0))"
timeout -s INT -k 10 ${BENCH_S:-160} python3 experiments/bench_conv.py --methods pallas xla --dtypes bfloat16 --repeats 5 \
  --target-s 0.05 --pallas-table $W/table.json --out $W/bench > $W/bench.txt 2>&1; echo "rc=$?"
grep -E "^(lesson|resnet|conv1x1|lenet|stride2|depthwise|unet|dcgan)" $W/bench.txt | grep " pallas " | cut -c1-120 | sort -u
echo "done t=$((SECONDS-t0))"
