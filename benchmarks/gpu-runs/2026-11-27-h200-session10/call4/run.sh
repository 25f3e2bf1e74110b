#!/usr/bin/env bash
# Session 10, GPU call 4: kernel gradients with atomic split-K (and tap groups), small grid.
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
W=${OUT:-/tmp/out}; mkdir -p $W
t0=$SECONDS
timeout -s INT -k 5 ${TUNE_W_S:-105} python3 -m experiments.tune_pallas --grid small --products w --dtypes bfloat16 \
  --budget-s ${TUNE_W_BUDGET:-85} --repeats 3 --out $W/tunew --layers resnet14 resnet7 resnet56 resnet28 > $W/tunew.txt 2>&1; echo "rc=$?"
python3 - $W/tunew/tune.json <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for r in d["rows"]:
    print(r["layer"])
    for c in sorted(r["candidates"], key=lambda c: c.get("ms", 1e9)):
        f = c["config"]
        print(f"  {1e3*c.get('ms', 0):7.1f} {f['block_m']}x{f['block_n']}x{f['block_k']} w{f['num_warps']} s{f['num_stages']}"
              f" split{f['split_k']} ser{int(f['serial'])} atom{int(f.get('atomic', 0))} tg{f.get('tap_group', 1)} {c.get('error', '')[:90]}")
PY
echo "done t=$((SECONDS-t0))"
