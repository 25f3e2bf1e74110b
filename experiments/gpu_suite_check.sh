#!/usr/bin/env bash
# The GPU check, in one command, on a machine with a GPU and a CUDA jax installed (no
# network needed):
#
#     OUT=results/gpu bash experiments/gpu_suite_check.sh
#
# 1. The test suite with the GPU as JAX's default device: the numerical tests run on the
#    GPU, the sharding tests on the 8 simulated CPU devices (JAX_PLATFORMS=cuda,cpu;
#    tests/conftest.py). pytest-xdist if installed. Log: $OUT/pytest.log, $OUT/junit.xml.
# 2. experiments/bench_conv.py's default methods in bfloat16: 'auto', the lowering each
#    platform's rule names for each layer, lax (and torch if importable), forward and
#    forward-plus-backward, with peak memory. $OUT/bench/bench.{json,csv}, $OUT/bench.txt.
# 3. A short summary, printed last: the suite's outcome, and per layer 'auto' against
#    lax in speed and peak memory (the rule: at most 1.5x lax's memory).
#
# Each part has its own time limit (SUITE_S, BENCH_S seconds) so that the summary comes
# whatever happens; the whole stays under 10 minutes.

set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_suite_check}
PY=${PYTHON:-python}
PLATFORMS=${PLATFORMS:-cuda,cpu}  # JAX_PLATFORMS for both parts (cpu,cpu-only: a dry run)
JOBS=${JOBS:-6}
SUITE_S=${SUITE_S:-290}
BENCH_S=${BENCH_S:-220}
mkdir -p "$OUT"
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # several test processes share the GPU
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's jconv, installed or not

if [ "${INSTALL:-1}" = 1 ]; then  # INSTALL=0: use the environment as it is
  "$PY" -m pip install -e . --no-deps --no-build-isolation -q >"$OUT/pip.log" 2>&1 ||
    echo "pip install -e . --no-deps failed (see $OUT/pip.log); testing the checkout in place"
fi

"$PY" - >"$OUT/env.txt" 2>&1 <<'EOF'
import importlib

import jax

print("jax", jax.__version__, "backend", jax.default_backend(), "devices", jax.devices())
for name in ("jaxlib", "flax", "optax", "orbax.checkpoint", "hypothesis", "pytest", "xdist",
             "sklearn", "matplotlib", "tqdm", "torch"):
    try:
        print(name, getattr(importlib.import_module(name), "__version__", "?"))
    except Exception as e:  # report, never stop: the suite says what it needs
        print(name, "MISSING", type(e).__name__, e)
EOF

xdist=()
workers="1 process (no pytest-xdist)"
# pytest-benchmark (installed there) warns under xdist, and the suite turns warnings into errors
if "$PY" -c "import xdist" 2>/dev/null; then xdist=(-n "$JOBS" -p no:benchmark) workers="$JOBS workers"; fi
start=$(date +%s)
# SIGINT first: pytest then still writes its summary of what ran; -v writes each outcome
# as it comes, so that a run cut short still shows its failures
JAX_PLATFORMS=$PLATFORMS timeout -s INT -k 20 "$SUITE_S" "$PY" -m pytest -v ${xdist[@]+"${xdist[@]}"} -rfEs \
  --durations=15 -p no:cacheprovider --junitxml="$OUT/junit.xml" >"$OUT/pytest.log" 2>&1
suite_rc=$?
[ $suite_rc = 124 ] && suite_rc="124 (stopped at the time limit)"
suite_s=$(($(date +%s) - start))

start=$(date +%s)
JAX_PLATFORMS=$PLATFORMS timeout -s INT -k 20 "$BENCH_S" "$PY" experiments/bench_conv.py \
  --dtypes bfloat16 --out "$OUT/bench" >"$OUT/bench.txt" 2>&1
bench_rc=$?
[ $bench_rc = 124 ] && bench_rc="124 (stopped at the time limit)"
bench_s=$(($(date +%s) - start))

echo "=== gpu_suite_check: $(head -1 "$OUT/env.txt")"
grep MISSING "$OUT/env.txt"
echo "=== test suite, JAX_PLATFORMS=$PLATFORMS: exit $suite_rc in ${suite_s}s (limit ${SUITE_S}s, $workers)"
grep -oE "(FAILED|ERROR) tests/[^ ]+" "$OUT/pytest.log" | sort -u | head -40
grep -E "^SKIPPED" "$OUT/pytest.log" | sed -E 's/^SKIPPED \[[0-9]+\] //' | sort | uniq -c | head -20
echo "passed: $(grep -cE "PASSED tests/" "$OUT/pytest.log"), last line: $(tail -1 "$OUT/pytest.log")"
echo "=== bench_conv (bfloat16): exit $bench_rc in ${bench_s}s (limit ${BENCH_S}s)"
if [ -f "$OUT/bench/bench.json" ]; then
  "$PY" - "$OUT/bench/bench.json" <<'EOF'
import json
import sys

result = json.load(open(sys.argv[1]))
rows = result["rows"]
cut = "" if "lesson" in result else " (cut short: the cases measured so far)"
print(result["environment"]["device"], "jax", result["environment"]["jax"], cut)
lax = {(r["layer"], r["direction"]): r for r in rows if r["method"] == "xla"}
print(f"{'layer':<10} {'dir':<8} {'auto runs':<9} {'vs lax':>7} {'mem/lax':>8}  others vs lax")
worst = 0.0
for r in rows:
    if r["method"] != "auto":
        continue
    base = lax[r["layer"], r["direction"]]
    mem = r["peak_mb"] / base["peak_mb"] if r["peak_mb"] and base["peak_mb"] else float("nan")
    worst = max(worst, mem)
    others = ", ".join(
        f"{o['method']} {o['vs_lax']:.2f}x"
        + (f" (mem {o['peak_mb'] / base['peak_mb']:.1f}x)" if o["peak_mb"] else "")
        for o in rows
        if (o["layer"], o["direction"]) == (r["layer"], r["direction"])
        and o["method"] not in ("auto", "xla")
    )
    flag = "  <- over 1.5x lax's memory" if mem > 1.5 else ""
    print(f"{r['layer']:<10} {r['direction']:<8} {r['chosen']:<9} {r['vs_lax']:>6.2f}x "
          f"{mem:>7.2f}x  {others}{flag}")
print(f"'auto' peak memory: at most {worst:.2f}x lax's")
EOF
else
  echo "no bench.json; the end of $OUT/bench.txt:"
  tail -20 "$OUT/bench.txt"
fi
