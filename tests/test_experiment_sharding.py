"""Smoke test of experiments/sharding.py on a tiny configuration: its CLI, table and JSON,
and that every collective found in the compiled programs is what the cost model says."""

from __future__ import annotations

import json

import pytest

from experiments import sharding
from tests._cpu import SHARDING

pytestmark = SHARDING


# The strategies one by one are tested (collectives, bytes) in test_sharding.py; here the
# experiment runs end to end on two cases, to keep the suite quick.
CASES = ["spatial", "pair"]


def test_tiny_run_matches_cost_model(tmp_path, capsys):
    argv = ["--n", "8", "--c", "8", "--o", "8", "--hw", "16", "--repeats", "1", "--calls", "1"]
    argv += ["--platform", "cpu"]  # the 8 simulated devices, on a GPU machine too
    result = sharding.main([*argv, "--cases", *CASES, "--out", str(tmp_path)])
    table = capsys.readouterr().out
    assert "simulated" in table and "pair" in table
    rows = {r["case"]: r for r in result["rows"]}
    assert set(rows) == {"unsharded", *CASES}
    for case in CASES:
        r = rows[case]
        assert r["forward_bytes_found"] == r["forward_bytes_model"], case
        assert r["backward_bytes_found"] == r["backward_bytes_model"], case
        assert r["forward_ms"] > 0 and r["forward_backward_ms"] > 0
    assert rows["spatial"]["forward_collectives"] == {"collective-permute": 2}
    assert rows["pair"]["forward_collectives"] == {"all-reduce": 1}
    saved = json.loads((tmp_path / "sharding.json").read_text())
    assert saved["meta"]["config"]["hw"] == 16 and len(saved["rows"]) == len(rows)


def test_unknown_case_is_refused():
    with pytest.raises(ValueError, match="unknown case"):
        sharding.run(sharding.ShardingConfig(cases=("pipeline",)))
