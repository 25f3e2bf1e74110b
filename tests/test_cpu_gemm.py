"""experiments/cpu_gemm.py: the lowerings' matrix-product shapes, and a tiny run."""

from __future__ import annotations

import json

import pytest

from experiments import bench_conv, cpu_gemm


@pytest.mark.parametrize(
    "layer, expected",
    [
        # 3x3, 64 -> 64 channels, batch 2, 56x56 'SAME': 9 taps over every output pixel;
        # 16 Winograd positions over 28x28 tiles; blocks of MIN_BLOCK = 2 columns (O = 64),
        # each reading 4 input columns
        ("resnet56", {"taps": (6272, 64, 64, 9), "winograd": (1568, 64, 64, 16),
                      "banded": (2 * 56 * 28, 3 * 4 * 64, 2 * 64, 1)}),
        # LeNet conv2, batch 256, 6 -> 16, 5x5 on 14x14: 10x10 outputs, 2-column blocks
        ("lenet2", {"taps": (25600, 6, 16, 25), "winograd": (6400, 6, 16, 36),
                    "banded": (256 * 10 * 5, 5 * 6 * 6, 2 * 16, 1)}),
        # stride 2: no Winograd; 2-column blocks read 5 input columns
        ("stride2", {"taps": (3136, 64, 128, 9), "banded": (1568, 3 * 5 * 64, 2 * 128, 1)}),
    ],
)  # fmt: skip
def test_lowering_gemms(layer, expected):
    layer = bench_conv.ALL_LAYERS[layer]
    gemms = cpu_gemm.lowering_gemms(layer, layer.batch_cpu)
    assert {g.lowering: (g.m, g.k, g.n, g.count) for g in gemms} == expected


def test_run_writes_rates(tmp_path):
    config = cpu_gemm.GemmConfig(
        layers=("lenet2",), dtypes=("bfloat16",), repeats=1, target_s=1e-3,
        out=str(tmp_path), quiet=True,
    )  # fmt: skip
    result = cpu_gemm.run(config)
    assert [r["lowering"] for r in result["rows"]] == ["taps", "winograd", "banded"]
    for r in result["rows"]:
        assert r["xla_gflops"] > 0 and r["xla_in_f32_gflops"] > 0
    assert json.loads((tmp_path / "gemm.json").read_text())["rows"] == result["rows"]
