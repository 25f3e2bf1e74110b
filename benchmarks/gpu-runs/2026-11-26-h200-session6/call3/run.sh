#!/usr/bin/env bash
# Session 6, GPU call 3 (short): the test suite on the GPU for ~90 s, then 'auto' (new CUDA rule) on 5 layers.
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
W=${OUT:-/tmp/out}; mkdir -p $W
t0=$SECONDS
echo "== pytest t=0"
JAX_PLATFORMS=cuda,cpu timeout -s INT -k 5 ${SUITE_S:-95} python3 -m pytest -p no:benchmark -p no:cacheprovider -v -n 8 -rfE \
  --junitxml=$W/junit.xml tests/ > $W/pytest.txt 2>&1; echo "rc=$?"
echo "passed $(grep -c ' PASSED' $W/pytest.txt) failed $(grep -c ' FAILED' $W/pytest.txt) errors $(grep -c ' ERROR' $W/pytest.txt)"
grep -E "^(FAILED|ERROR)" $W/pytest.txt | head -20; tail -3 $W/pytest.txt
echo "== bench auto t=$((SECONDS-t0))"
timeout -s INT -k 5 ${BENCH_S:-70} python3 experiments/bench_conv.py --methods auto xla --dtypes bfloat16 --repeats 3 --no-torch \
  --target-s 0.03 --layers lesson lenet2 stride2 conv1x1 resnet28 --out /tmp/bench > $W/bench.txt 2>&1; echo "rc=$?"
cp /tmp/bench/bench.json $W/ 2>/dev/null
grep -E "^(lesson|resnet|conv1x1|lenet|stride2)" $W/bench.txt | cut -c1-100
echo "done t=$((SECONDS-t0))"
