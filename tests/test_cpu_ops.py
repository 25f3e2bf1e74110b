"""experiments/cpu_ops.py: a tiny profile of bench_conv's steps on the CPU."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from experiments import bench_conv, cpu_ops

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu", reason="profiles the CPU")


def test_profile_names_the_compiled_programs_operations():
    config = cpu_ops.OpsConfig(
        layers=("lenet2",), methods=("auto",), directions=("fwd+bwd",), batch=4, calls=3,
        quiet=True,
    )  # fmt: skip
    [row] = cpu_ops.run(config)["rows"]
    layer = bench_conv.ALL_LAYERS["lenet2"]
    x, w, ct = bench_conv.layer_arrays(layer, 4, jnp.float32, "NHWC", jax.random.key(0))
    step = bench_conv.make_step(layer, "NHWC", "auto", "fwd+bwd").lower(x, w, ct).compile()
    program = step.as_text()
    assert row["ops"] and row["wall_ms"] > 0 and row["ops_ms"] > 0 and row["faults"] >= 0
    for name, us, runs in row["ops"]:
        assert f"%{name} = " in program  # an instruction of the step's optimized program
        assert us >= 0 and runs > 0
    assert row["temp_mib"] == step.memory_analysis().temp_size_in_bytes / 2**20
    assert "page faults" in cpu_ops.format_row(row, top=3)


def test_by_kind_sums_numbered_operations():
    assert cpu_ops.kind_of("ynn_fusion.12") == "ynn_fusion"
    assert cpu_ops.kind_of("wrapped_pad") == "wrapped_pad"
    config = cpu_ops.OpsConfig(
        layers=("lenet2",), methods=("taps",), directions=("fwd",), batch=4, calls=2,
        by_kind=True, quiet=True,
    )  # fmt: skip
    [row] = cpu_ops.run(config)["rows"]
    names = [name for name, _, _ in row["ops"]]
    assert names and len(names) == len(set(names))
    assert all(cpu_ops.kind_of(name) == name for name in names)


def test_refuses_unknown_names():
    with pytest.raises(ValueError, match="unknown layer"):
        cpu_ops.run(cpu_ops.OpsConfig(layers=("vgg",), quiet=True))
    with pytest.raises(ValueError, match="unknown dtype"):
        cpu_ops.run(cpu_ops.OpsConfig(dtype="int8", quiet=True))
