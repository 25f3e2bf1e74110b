#!/usr/bin/env bash
# Session 7, GPU call 1: serial split-K check, w-tune (full grid, serial candidates), bench, GPU pytest subset.
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
W=${OUT:-/tmp/out}; mkdir -p $W
t0=$SECONDS
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > $W/env.txt
python3 -c "import jax, jaxlib, torch; print(jax.__version__, jaxlib.__version__, torch.__version__, jax.devices())" >> $W/env.txt 2>&1
cat $W/env.txt; git log --oneline | head -1 >> $W/env.txt
echo "== serial check t=$((SECONDS-t0))"
timeout -s INT -k 5 ${SERIAL_S:-75} python3 .devrun/serial_check.py > $W/serial.txt 2>&1; rc=$?; echo "rc=$rc"
grep -E "split|ALL|SOME|Error|error" $W/serial.txt | cut -c1-60,160-260 | head -40
NOSERIAL=""; if [ $rc -ne 0 ]; then NOSERIAL="--no-serial"; echo "serial candidates OFF"; fi
echo "== tune w t=$((SECONDS-t0))"
timeout -s INT -k 10 ${TUNE_S:-170} python3 -m experiments.tune_pallas --grid full --products w --dtypes bfloat16 \
  --budget-s ${TUNE_BUDGET:-140} --repeats 3 $NOSERIAL --out $W/tune \
  --layers resnet14 resnet7 depthwise resnet28 resnet56 lesson conv1x1 stride2 > $W/tune.txt 2>&1; echo "rc=$?"
grep -E "default" $W/tune.txt | cut -c1-200
TABLE_ARG=""; [ -s $W/tune/table.json ] && TABLE_ARG="--pallas-table $W/tune/table.json"
echo "== bench t=$((SECONDS-t0))"
timeout -s INT -k 10 ${BENCH_S:-150} python3 experiments/bench_conv.py --methods pallas xla --dtypes bfloat16 --repeats 5 \
  --target-s 0.05 $TABLE_ARG --out $W/bench \
  --layers resnet14 resnet7 depthwise resnet28 resnet56 lesson conv1x1 stride2 lenet1 lenet2 > $W/bench.txt 2>&1; echo "rc=$?"
grep -E "^(lesson|resnet|conv1x1|lenet|stride2|depthwise)" $W/bench.txt | grep -v " xla " | cut -c1-110
grep -E "vs lax|vs torch" $W/bench.txt | head
echo "== pytest t=$((SECONDS-t0))"
JAX_PLATFORMS=cuda,cpu timeout -s INT -k 5 ${SUITE_S:-70} python3 -m pytest -p no:cacheprovider -q -n 8 -rfE \
  tests/test_conv2d.py tests/test_conv_primitive.py tests/test_finite_guard.py tests/test_nnx.py tests/test_sharding.py \
  > $W/pytest.txt 2>&1; echo "rc=$?"
grep -E "^(FAILED|ERROR)" $W/pytest.txt | head -20; tail -2 $W/pytest.txt
echo "done t=$((SECONDS-t0))"
