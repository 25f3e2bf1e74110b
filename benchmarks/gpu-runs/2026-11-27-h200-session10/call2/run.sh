#!/usr/bin/env bash
# Session 10, GPU call 2: the kernel-gradient tuning that call 1 lost to a bad flag, then the
# bench of the layers it touches with call 1's y/x winners merged in.
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
W=${OUT:-/tmp/out}; mkdir -p $W
t0=$SECONDS
echo "== tune w t=$((SECONDS-t0))"
timeout -s INT -k 10 ${TUNE_W_S:-175} python3 -m experiments.tune_pallas --grid full --products w --dtypes bfloat16 \
  --budget-s ${TUNE_W_BUDGET:-150} --repeats 3 --out $W/tunew \
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
    print("   timed", len(c), "errors", sum("error" in x for x in r["candidates"]), "of", len(r["candidates"]))
PY
python3 - $W <<'PY'
import json, sys, os
w = sys.argv[1]; t = json.load(open(".devrun/table_yx.json"))
p = os.path.join(w, "tunew", "table.json")
if os.path.exists(p): t.update(json.load(open(p)))
json.dump(t, open(os.path.join(w, "table.json"), "w"), indent=1, sort_keys=True)
print(len(t), "entries merged")
PY
echo "== bench t=$((SECONDS-t0))"
timeout -s INT -k 10 ${BENCH_S:-110} python3 experiments/bench_conv.py --methods pallas xla --dtypes bfloat16 --repeats 5 \
  --target-s 0.05 --pallas-table $W/table.json --out $W/bench \
  --layers resnet14 resnet56 resnet7 resnet28 stride2 lesson depthwise > $W/bench.txt 2>&1; echo "rc=$?"
grep -E "^(lesson|resnet|stride2|depthwise)" $W/bench.txt | grep " pallas " | cut -c1-120 | sort -u
echo "done t=$((SECONDS-t0))"
