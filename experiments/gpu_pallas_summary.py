"""One table out of experiments/gpu_pallas_check.sh's results: check, tuning and benchmark.

Reads what the three steps wrote under OUT (check/check.json, tune/tune.json,
bench/bench.json, steps.txt), whichever of them exist, and prints per bench
layer: the largest relative error of 'pallas' against lax on the host's CPU
(float32 and bfloat16, worst of y, dx, dw), that of lax on the device (cuDNN)
in float32 against the same, its speed against lax forward and
forward-plus-backward (bfloat16), its TFLOP/s, torch's forward speed against
lax, peak memory against lax's, and what tuning gained over the default
settings, and which lowering 'auto' ran and its speed against lax where the
benchmark timed it. A missing or failed step leaves its columns as '-'.

    python experiments/gpu_pallas_summary.py OUT
"""

from __future__ import annotations

import json
import pathlib
import sys
from collections.abc import Sequence


def _load(path: pathlib.Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def summarize(out: str | pathlib.Path) -> str:
    out = pathlib.Path(out)
    check = _load(out / "check" / "check.json") or {"rows": []}
    tune = _load(out / "tune" / "tune.json") or {"rows": []}
    bench = _load(out / "bench" / "bench.json") or {"rows": []}
    layers = list(
        dict.fromkeys(r["layer"] for src in (check, tune, bench) for r in src.get("rows", []))
    )
    errors: dict = {}
    device_lax: dict = {}
    for r in check["rows"]:
        worst = None if "error" in r else max(r["y"], r["dx"], r["dw"])
        errors[r["layer"], r["dtype"]] = (worst, r["ok"])
        if "lax_y" in r and r["dtype"] == "float32":
            device_lax[r["layer"]] = max(r["lax_y"], r["lax_dx"], r["lax_dw"])
    speed: dict = {}
    for r in bench["rows"]:
        if r["dtype"] == "bfloat16":
            speed[r["layer"], r["direction"], r["method"]] = r
    gains: dict = {}
    for r in tune["rows"]:
        if r["dtype"] == "bfloat16" and r["default_ms"] and r["best_ms"]:
            gains[r["layer"], r["product"]] = r["default_ms"] / r["best_ms"]

    def err(layer: str, dtype: str) -> str:
        worst, ok = errors.get((layer, dtype), (None, None))
        return "-" if ok is None else f"{_fmt(worst, '.0e')} {'ok' if ok else 'FAIL'}"

    def ratio(layer: str, direction: str, method: str) -> str:
        r = speed.get((layer, direction, method))
        return "-" if r is None else f"{r['vs_lax']:.2f}x"

    head = (
        f"{'layer':<10} {'err f32':>11} {'err bf16':>11} {'lax f32':>7} {'fwd':>7} {'fwd+bwd':>8} "
        f"{'TF/s':>6} {'torch':>6} {'peak/lax':>8}  {'tuned y/x/w':<14}  auto runs"
    )
    lines = [head, "-" * len(head)]
    for layer in layers:
        fwd = speed.get((layer, "fwd", "pallas"))
        base = speed.get((layer, "fwd+bwd", "xla"))
        mine = speed.get((layer, "fwd+bwd", "pallas"))
        peak = None
        if mine and base and mine["peak_mb"] and base["peak_mb"]:
            peak = mine["peak_mb"] / base["peak_mb"]
        tuned = "/".join(_fmt(gains.get((layer, p)), ".2f") for p in "yxw")
        auto = speed.get((layer, "fwd", "auto"))
        runs = "-" if auto is None else auto["chosen"]
        if auto is not None:
            runs += f" {ratio(layer, 'fwd', 'auto')} / {ratio(layer, 'fwd+bwd', 'auto')}"
        lines.append(
            f"{layer:<10} {err(layer, 'float32'):>11} {err(layer, 'bfloat16'):>11} "
            f"{_fmt(device_lax.get(layer), '.0e'):>7} "
            f"{ratio(layer, 'fwd', 'pallas'):>7} {ratio(layer, 'fwd+bwd', 'pallas'):>8} "
            f"{_fmt(fwd and fwd['tflops'], '.0f'):>6} {ratio(layer, 'fwd', 'torch'):>6} "
            f"{_fmt(peak, '.2f'):>8}  {tuned:<14}  {runs}"
        )
    env = bench.get("environment") or check.get("environment") or {}
    if env:
        lines.append(f"{env.get('device')}, jax {env.get('jax')}, {env.get('date')}")
    lines.append(
        "fwd, fwd+bwd, torch: speed against lax (bfloat16, bench batch sizes); err: "
        "max |pallas - ref| / max |ref| of y, dx, dw, ref = lax on the CPU; lax f32: lax on "
        "the device against ref; tuned: default time / best time; auto runs: the lowering "
        "'auto' ran, its speed against lax fwd / fwd+bwd (when timed)"
    )
    steps = out / "steps.txt"
    if steps.exists():
        lines += ["", "steps:", *steps.read_text().strip().splitlines()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    print(summarize(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
