#!/usr/bin/env bash
# Session 7, GPU call 2: w-tune with serial candidates, bench fwd+bwd, GPU pytest subset.
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
W=${OUT:-/tmp/out}; mkdir -p $W
t0=$SECONDS
echo "== tune w t=$((SECONDS-t0))"
timeout -s INT -k 10 ${TUNE_S:-190} python3 -m experiments.tune_pallas --grid full --products w --dtypes bfloat16 \
  --budget-s ${TUNE_BUDGET:-160} --repeats 3 --out $W/tune \
  --layers resnet14 resnet7 resnet56 depthwise resnet28 lesson conv1x1 stride2 > $W/tune.txt 2>&1; echo "rc=$?"
grep -E "default" $W/tune.txt | cut -c1-200
TABLE_ARG=""; [ -s $W/tune/table.json ] && TABLE_ARG="--pallas-table $W/tune/table.json"
echo "== bench t=$((SECONDS-t0))"
timeout -s INT -k 10 ${BENCH_S:-120} python3 experiments/bench_conv.py --methods pallas xla --dtypes bfloat16 --repeats 5 \
  --target-s 0.05 $TABLE_ARG --directions fwd+bwd --out $W/bench \
  --layers resnet14 resnet7 resnet56 depthwise resnet28 lesson conv1x1 stride2 > $W/bench.txt 2>&1; echo "rc=$?"
grep -E "^(lesson|resnet|conv1x1|lenet|stride2|depthwise)" $W/bench.txt | grep -v " xla " | cut -c1-110 | sort -u
grep -E "vs lax" $W/bench.txt | head -3
echo "== pytest t=$((SECONDS-t0))"
JAX_PLATFORMS=cuda,cpu timeout -s INT -k 5 ${SUITE_S:-60} python3 -m pytest -p no:benchmark -p no:cacheprovider -q -n 8 -rfE \
  tests/test_conv2d.py tests/test_conv_primitive.py tests/test_finite_guard.py tests/test_nnx.py tests/test_sharding.py \
  > $W/pytest.txt 2>&1; echo "rc=$?"
grep -E "^(FAILED|ERROR)" $W/pytest.txt | head -20; tail -2 $W/pytest.txt
echo "done t=$((SECONDS-t0))"
