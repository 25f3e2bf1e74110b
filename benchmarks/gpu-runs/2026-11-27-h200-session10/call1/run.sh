#!/usr/bin/env bash
# Session 10, GPU call 1: kernel gradients with tap groups (tuned), extra forward tilings,
# depthwise unrolled taps; the bench with the merged table; GPU pytest subset.
# Run: run(command="bash .devrun/gpu_call8.sh", carry=[".devrun"], timeout_s=540)
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
W=${OUT:-/tmp/out}; mkdir -p $W
t0=$SECONDS
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import jax, jaxlib; print(jax.__version__, jax.devices())"
echo "== tune w t=$((SECONDS-t0))"
timeout -s INT -k 10 ${TUNE_W_S:-170} python3 -m experiments.tune_pallas --grid full --products w --dtypes bfloat16 \
  --budget-s ${TUNE_W_BUDGET:-145} --repeats 3 --out $W/tunew --quiet \
  --layers resnet14 resnet56 resnet7 resnet28 stride2 lesson > $W/tunew.txt 2>&1; echo "rc=$?"
python3 - $W/tunew/tune.json <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for r in d["rows"]:
    c = sorted([x for x in r["candidates"] if "ms" in x], key=lambda x: x["ms"])
    tg = [x for x in c if x["config"].get("tap_group", 1) > 1]
    b = r["best"]
    print(f"{r['layer']:<9} w default {1e3*r['default_ms']:.1f} best {1e3*r['best_ms']:.1f} us"
          f" [{b['block_m']}x{b['block_n']}x{b['block_k']} w{b['num_warps']} s{b['num_stages']}"
          f" split{b['split_k']} serial{int(b['serial'])} taps{b.get('tap_group',1)}]"
          + (f" best-tapgroup {1e3*tg[0]['ms']:.1f} {tg[0]['config']}" if tg else ""))
    print("   errors:", sum("error" in x for x in r["candidates"]), "of", len(r["candidates"]))
PY
echo "== tune y x t=$((SECONDS-t0))"
timeout -s INT -k 10 ${TUNE_YX_S:-90} python3 -m experiments.tune_pallas --grid full --products y x --dtypes bfloat16 \
  --budget-s ${TUNE_YX_BUDGET:-70} --repeats 3 --out $W/tuneyx \
  --layers resnet7 resnet14 depthwise resnet56 > $W/tuneyx.txt 2>&1; echo "rc=$?"
grep -E "default" $W/tuneyx.txt | cut -c1-200
python3 - $W <<'PY'
import json, sys, os
w = sys.argv[1]; t = {}
for d in ("tunew", "tuneyx"):
    p = os.path.join(w, d, "table.json")
    if os.path.exists(p): t.update(json.load(open(p)))
json.dump(t, open(os.path.join(w, "table.json"), "w"), indent=1, sort_keys=True)
print(len(t), "entries merged")
PY
TABLE_ARG=""; [ -s $W/table.json ] && TABLE_ARG="--pallas-table $W/table.json"
echo "== bench t=$((SECONDS-t0))"
timeout -s INT -k 10 ${BENCH_S:-150} python3 experiments/bench_conv.py --methods pallas xla --dtypes bfloat16 --repeats 5 \
  --target-s 0.05 $TABLE_ARG --out $W/bench > $W/bench.txt 2>&1; echo "rc=$?"
grep -E "^(lesson|resnet|conv1x1|lenet|stride2|depthwise|unet|dcgan)" $W/bench.txt | grep -v " xla " | cut -c1-120 | sort -u
echo "== pytest t=$((SECONDS-t0))"
JAX_PLATFORMS=cuda,cpu timeout -s INT -k 5 ${SUITE_S:-60} python3 -m pytest -p no:benchmark -p no:cacheprovider -q -n 8 -rfE \
  tests/test_conv_primitive.py tests/test_sharding.py tests/test_pallas.py tests/test_conv2d.py tests/test_auto.py \
  > $W/pytest.txt 2>&1; echo "rc=$?"
grep -E "^(FAILED|ERROR)" $W/pytest.txt | head -20; tail -2 $W/pytest.txt
echo "done t=$((SECONDS-t0))"
