"""experiments/tune_pallas.py, check_pallas.py and gpu_pallas_summary.py, in interpret mode on
one tiny layer, so that the GPU run they were written for finds them working."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest

from experiments import bench_conv, check_pallas, gpu_pallas_summary, tune_pallas
from jconv import _pallas_tuning
from jconv._pallas_tuning import BlockConfig, table_from_json


@pytest.fixture
def restore_table(monkeypatch):
    """bench_conv --pallas-table adds to jconv's table: undone after the test."""
    monkeypatch.setattr(_pallas_tuning, "TABLE", dict(_pallas_tuning.TABLE))


def test_gpu_run_steps_write_what_the_summary_reads(tmp_path, restore_table):
    tuned = tune_pallas.run(
        tune_pallas.TuneConfig(
            layers=("lenet2",),
            dtypes=("float32",),
            products=("w",),
            grid="tiny",
            batch=1,
            repeats=1,
            interpret=True,
            out=str(tmp_path / "tune"),
            quiet=True,
        )
    )
    rows = tuned["rows"]
    assert [r["product"] for r in rows] == ["w"]
    for r in rows:  # the default, the tiny grid's setting and a serial one, all timed
        assert len(r["candidates"]) == 3 and all(c["ms"] > 0 for c in r["candidates"])
        assert r["best_ms"] == min(c["ms"] for c in r["candidates"])
    table = table_from_json((tmp_path / "tune" / "table.json").read_text())
    assert set(table) == {r["class"] for r in rows}
    assert all(isinstance(v, BlockConfig) for v in table.values())

    checked = check_pallas.run(
        check_pallas.CheckConfig(
            layers=("lenet2",), dtypes=("float32",), batch=1, out=str(tmp_path / "check")
        )
    )
    [row] = checked["rows"]
    assert row["ok"] and row["repeatable"], row
    assert max(row["y"], row["dx"], row["dw"]) < 1e-5

    bench_conv.run(
        bench_conv.BenchConfig(
            layers=("lenet2",),
            dtypes=("bfloat16",),
            methods=("pallas",),
            directions=("fwd",),
            batch=1,
            repeats=1,
            calls=1,
            torch=False,
            out=str(tmp_path / "bench"),
            quiet=True,
            pallas_table=str(tmp_path / "tune" / "table.json"),
        )
    )
    assert set(table) <= set(_pallas_tuning.TABLE)  # the tuned settings were in force
    (tmp_path / "steps.txt").write_text("check ok 1s\n")

    summary = gpu_pallas_summary.summarize(tmp_path).splitlines()
    [line] = [s for s in summary if s.startswith("lenet2")]
    assert "ok" in line and "x" in line  # an error, and a speed against lax
    assert summary[-1] == "check ok 1s"
    assert json.loads((tmp_path / "bench" / "bench.json").read_text())["rows"]


def test_candidates_compile_side_by_side_in_order(monkeypatch):
    """Candidates compile config.workers at a time; the rows keep the candidates' order, a
    setting that fails to compile keeps its error, and once the deadline has passed no
    further batch starts (the first always does)."""
    geo = tune_pallas.layer_geometry(bench_conv.LAYERS["lenet2"], 1)
    cands = [BlockConfig(16, 16, 16, split_k=s) for s in range(1, 8)]

    def product_fn(product, geo, dtype, config, interpret):
        if config.split_k == 3:
            raise ValueError("too much shared memory")
        return jax.jit(lambda a, b: a * config.split_k + b)

    monkeypatch.setattr(tune_pallas, "product_fn", product_fn)
    args = (np.ones(3, np.float32), np.zeros(3, np.float32))
    for workers in (1, 3):
        config = tune_pallas.TuneConfig(workers=workers)
        rows, compiled = tune_pallas._compile_candidates(
            "w", geo, "float32", cands, args, config, deadline=float("inf")
        )
        assert [r["config"]["split_k"] for r in rows] == list(range(1, 8))
        assert [i for i, r in enumerate(rows) if "error" in r] == [2] and 2 not in compiled
        assert "too much shared memory" in rows[2]["error"]
        assert all(float(compiled[i]()[0]) == cands[i].split_k for i in compiled)
        rows, _ = tune_pallas._compile_candidates(
            "w", geo, "float32", cands, args, config, deadline=float("-inf")
        )
        assert len(rows) == workers  # the first batch only


def test_candidates_fit_each_problem():
    geo = tune_pallas.layer_geometry(bench_conv.LAYERS["lenet2"], 1024)
    for product in "yxw":
        cands = tune_pallas.candidates(product, geo, "bfloat16", "full")
        assert cands[0] == _pallas_tuning.default_config(product, geo, "bfloat16")
        assert len(set(cands)) == len(cands) > 1
        # the table's setting is always tried, even on a grid that does not hold it
        assert _pallas_tuning.config_for(product, geo, "bfloat16") in cands[:2]
        assert _pallas_tuning.config_for(product, geo, "bfloat16") in (
            tune_pallas.candidates(product, geo, "bfloat16", "tiny")
        )
        if product != "w":  # never wider than the (power-of-two) output channels need
            assert max(c.block_n for c in cands) == 16
    geo = tune_pallas.layer_geometry(bench_conv.LAYERS["depthwise"], 64)
    for product in "yxw":  # elementwise kernels: blocks across the 128 channels
        cands = tune_pallas.candidates(product, geo, "bfloat16", "full")
        assert len(set(cands)) == len(cands) > 1 and max(c.block_n for c in cands) == 128
        # every tap in one program (the kernel gradient), or unrolled (the others)
        assert any(c.flat for c in cands)
        # the kernels that roll down the rows, and only they, have rows
        assert not any(c.rows and (c.flat or c.serial) for c in cands)
        rolling = tune_pallas.ROWS_W_GRIDS if product == "w" else tune_pallas.ROWS_GRIDS
        assert sum(c.rows > 0 for c in cands) <= len(rolling["full"]) + 2  # + default, table
    geo = tune_pallas.layer_geometry(bench_conv.LAYERS["resnet14"], 64)
    cands = tune_pallas.candidates("w", geo, "bfloat16", "full")
    # a kernel row's taps per program, and a tap per program, are both tried; partial sums
    # within max_split_k, serial splits beyond it
    groups = {c.tap_group for c in cands}
    assert groups == {1, 3} and len(set(cands)) == len(cands)
    most = _pallas_tuning.max_split_k(geo, "bfloat16")
    assert all(c.split_k <= most for c in cands if not c.serial)
    assert any(c.serial and c.split_k > most for c in cands if c.tap_group == 3)
    conv1x1 = tune_pallas.layer_geometry(bench_conv.LAYERS["conv1x1"], 64)
    assert {c.tap_group for c in tune_pallas.candidates("w", conv1x1, "bfloat16", "full")} == {1}


def test_check_says_which_gpu_result_is_off(monkeypatch):
    """The reference is lax on the host's CPU, and lax on the device is checked against it too.

    A product that is off records where, and its error under other kernel settings.
    Here every product counts as off (a negative tolerance) and the arrays live on a
    second CPU device, standing in for the GPU.
    """
    monkeypatch.setitem(check_pallas.TOLERANCE, "float32", -1.0)
    monkeypatch.setattr(check_pallas, "VARIANTS", {"split_k=1": {"split_k": 1}})
    with jax.default_device(jax.devices("cpu")[1]):
        row = check_pallas.check_layer(bench_conv.LAYERS["lenet2"], "float32", 1, jax.random.key(3))
    assert row["reference"] == "lax on the CPU" and not row["ok"]
    for name in ("y", "dx", "dw"):
        assert 0 <= row[name] < 1e-5 and row[f"lax_{name}"] < 1e-6
        off = row[f"where_{name}"]
        assert off["over"] == off["size"] > 0 and len(off["index"]) == 4
        assert row[f"variants_{name}"]["split_k=1"] < 1e-5
    assert "device lax" in check_pallas.format_row(row)


def test_check_catches_results_that_change_between_runs(monkeypatch):
    """Three runs of 'pallas' on the same inputs must agree to the bit: a kernel whose
    result depends on the order its programs ran in (a broken serial split) fails."""
    calls = []
    real = check_pallas._value_and_grads

    def flaky(layer, method):
        run = real(layer, method)
        if method != "pallas":
            return run

        def changing(*args):
            calls.append(1)
            y, dx, dw = run(*args)
            return y, dx, dw * (1 + 1e-6 * len(calls))  # rounding-sized, different each run

        return changing

    monkeypatch.setattr(check_pallas, "_value_and_grads", flaky)
    row = check_pallas.check_layer(bench_conv.LAYERS["lenet2"], "float32", 1, jax.random.key(4))
    assert len(calls) == 3 and row["dw"] < 1e-5
    assert not row["repeatable"] and not row["ok"]
    assert "NOT REPEATABLE" in check_pallas.format_row(row)


def test_a_setting_that_disagrees_with_the_default_is_dropped():
    """A candidate whose result is off by more than rounding cannot win on speed."""
    rng = np.random.default_rng(3)
    ref = rng.standard_normal((4, 8)).astype(np.float32)
    compiled = {
        0: lambda: ref,  # the default settings
        1: lambda: ref * (1 + 1e-3),  # rounding-sized: kept
        2: lambda: np.roll(ref, 1),  # wrong rows: dropped
    }
    results = [{}, {}, {}]
    tune_pallas._drop_disagreeing(compiled, results, "bfloat16")
    assert set(compiled) == {0, 1}
    assert results[1]["diff_from_default"] < 2e-3 and "error" not in results[1]
    assert "differs from the first setting's" in results[2]["error"]


def test_command_line_takes_every_setting(tmp_path, capsys):
    """The command line reaches every TuneConfig field (a GPU run once lost its tuning to
    an unknown flag); --quiet leaves only the closing line."""
    out = tmp_path / "tune"
    argv = ["--layers", "lenet2", "--dtypes", "float32", "--products", "w", "--grid", "tiny"]
    argv += ["--batch", "1", "--repeats", "1", "--budget-s", "60", "--no-serial"]
    argv += ["--workers", "2", "--interpret", "--quiet", "--out", str(out)]
    assert tune_pallas.main(argv) == 0
    assert capsys.readouterr().out.strip().splitlines() == [f"1 winners -> {out}/table.json"]
    rows = json.loads((out / "tune.json").read_text())["rows"]
    assert not any(c["config"]["serial"] for c in rows[0]["candidates"])
    fields = {f.name for f in dataclasses.fields(tune_pallas.TuneConfig)}
    assert {a.dest for a in tune_pallas.parser()._actions} - {"help"} == fields
