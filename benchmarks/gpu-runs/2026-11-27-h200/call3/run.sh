#!/usr/bin/env bash
# Session 7, GPU call 3: depthwise tune (rolling rows), bench whole suite with merged table, depthwise kernels.
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
W=${OUT:-/tmp/out}; mkdir -p $W
t0=$SECONDS
echo "== tune depthwise t=$((SECONDS-t0))"
timeout -s INT -k 10 ${TUNE_S:-110} python3 -m experiments.tune_pallas --grid full --dtypes bfloat16 \
  --budget-s ${TUNE_BUDGET:-90} --repeats 3 --out $W/tune --layers depthwise > $W/tune.txt 2>&1; echo "rc=$?"
grep -E "default" $W/tune.txt | cut -c1-200
TABLE_ARG=""; [ -s $W/tune/table.json ] && TABLE_ARG="--pallas-table $W/tune/table.json"
echo "== bench t=$((SECONDS-t0))"
timeout -s INT -k 10 ${BENCH_S:-140} python3 experiments/bench_conv.py --methods pallas xla --dtypes bfloat16 --repeats 5 \
  --target-s 0.05 $TABLE_ARG --out $W/bench > $W/bench.txt 2>&1; echo "rc=$?"
grep -E "^(lesson|resnet|conv1x1|lenet|stride2|depthwise)" $W/bench.txt | grep -v " xla " | cut -c1-110 | sort -u
grep -E "vs lax" $W/bench.txt | head -3
echo "== kernels t=$((SECONDS-t0))"
cp $W/tune/table.json /tmp/t.json 2>/dev/null
timeout -s INT -k 5 ${KERNELS_S:-45} python3 - > $W/kernels.txt 2>&1 <<'PY'
import sys, json
from jconv import _pallas_tuning
try:
    _pallas_tuning.TABLE.update(_pallas_tuning.table_from_json(open('/tmp/t.json').read()))
except Exception as e: print("no tuned table", e)
from experiments import gpu_kernels
sys.argv = ["gpu_kernels", "--methods", "pallas", "xla", "--layers", "depthwise", "resnet14", "resnet56"]
gpu_kernels.main()
PY
echo "rc=$?"; tail -40 $W/kernels.txt | cut -c1-120
echo "done t=$((SECONDS-t0))"
