"""experiments/bench_conv.py on a tiny configuration, so that CI keeps it working."""

from __future__ import annotations

import json

import pytest

from experiments import bench_conv


def test_bench_runs_and_writes_results(tmp_path):
    config = bench_conv.BenchConfig(
        layers=("lenet2",),
        dtypes=("float32",),
        methods=("auto", "taps"),
        batch=2,
        repeats=2,
        calls=2,
        torch=False,
        out=str(tmp_path),
        quiet=True,
    )
    result = bench_conv.run(config)
    rows = result["rows"]
    # each direction has each method plus the lax baseline, all timed
    assert len(rows) == 2 * 3
    assert {r["method"] for r in rows} == {"auto", "taps", "xla"}
    for r in rows:
        assert r["ms"] > 0 and r["tflops"] > 0
        if r["method"] == "xla":
            assert r["vs_lax"] == 1.0
    assert {r["chosen"] for r in rows if r["method"] == "auto"} == {"banded"}
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["environment"]["jax"] and len(saved["rows"]) == len(rows)
    assert (tmp_path / "bench.csv").read_text().count("\n") == len(rows) + 1
    assert saved["lesson"]["macs_per_sample"] == 1_024_000_000


def test_bench_refuses_unknown_names():
    with pytest.raises(ValueError, match="unknown layer"):
        bench_conv.run(bench_conv.BenchConfig(layers=("vgg",), out=None, quiet=True))
    with pytest.raises(SystemExit):
        bench_conv.main(["--methods", "fft"])
