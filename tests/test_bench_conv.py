"""experiments/bench_conv.py on a tiny configuration, so that CI keeps it working."""

from __future__ import annotations

import dataclasses
import json
import tempfile

import jax
import jax.numpy as jnp
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
    # on the CPU its own rule's 'banded'; on an accelerator lax
    expected = "banded" if jax.default_backend() == "cpu" else "xla"
    assert {r["chosen"] for r in rows if r["method"] == "auto"} == {expected}
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["environment"]["jax"] and len(saved["rows"]) == len(rows)
    assert (tmp_path / "bench.csv").read_text().count("\n") == len(rows) + 1
    assert saved["lesson"]["macs_per_sample"] == 1_024_000_000


def test_environment_records_the_allocator_and_xla_settings(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "1")
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
    monkeypatch.setenv("JCONV_UNRELATED", "x")
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    settings = bench_conv.environment()["settings"]
    assert settings["MALLOC_ARENA_MAX"] == "1"
    assert settings["XLA_FLAGS"] == "--xla_cpu_multi_thread_eigen=false"
    assert "JCONV_UNRELATED" not in settings and "LD_PRELOAD" not in settings


def test_bench_refuses_unknown_names():
    with pytest.raises(ValueError, match="unknown layer"):
        bench_conv.run(bench_conv.BenchConfig(layers=("vgg",), out=None, quiet=True))
    with pytest.raises(SystemExit):
        bench_conv.main(["--methods", "fft"])


def test_default_methods_per_platform():
    """With no methods named: the CPU's fixed list there; on an accelerator 'auto', each
    platform rule's lowering for the layer (LeNet conv2: 'banded' on a CPU) and lax."""
    layer = bench_conv.LAYERS["lenet2"]
    x, w, _ = bench_conv.layer_arrays(layer, 2, jax.numpy.float32, "NHWC", jax.random.key(0))
    rules = bench_conv.auto_rules(layer, x, w, "NHWC")
    assert rules["cpu"] == "banded" and rules["cuda"] == "xla"
    assert bench_conv.default_methods(rules, "cuda") == ["auto", "banded", "xla"]
    assert bench_conv.default_methods(rules, "tpu") == ["auto", "banded", "xla"]
    assert bench_conv.default_methods(rules, "cpu") == list(bench_conv.CPU_METHODS)
    assert bench_conv.lowering_platform() in ("cpu", "cuda", "rocm", "tpu")


def test_interrupted_run_keeps_what_it_measured(tmp_path, monkeypatch):
    """Ctrl-C (or a time limit's SIGINT, as gpu_suite_check.sh sends) after the first case:
    that case is already in bench.json."""
    measure = bench_conv.bench_case

    def first_case_only(*args, **kwargs):
        if getattr(first_case_only, "done", False):
            raise KeyboardInterrupt
        first_case_only.done = True
        return measure(*args, **kwargs)

    monkeypatch.setattr(bench_conv, "bench_case", first_case_only)
    config = bench_conv.BenchConfig(
        layers=("lenet2",),
        dtypes=("float32",),
        methods=("xla",),
        batch=2,
        repeats=1,
        calls=1,
        torch=False,
        out=str(tmp_path),
        quiet=True,
    )
    with pytest.raises(KeyboardInterrupt):
        bench_conv.run(config)
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert [(r["direction"], r["method"]) for r in saved["rows"]] == [("fwd", "xla")]
    assert "lesson" not in saved  # what gpu_suite_check.sh reads as "cut short"


def test_transposed_layers_default_methods():
    """On an accelerator a transposed layer times 'auto', its phases' CPU lowerings and lax;
    its FLOPs are conv_transpose2d's (each input pixel times each tap, crops excluded)."""
    layer = bench_conv.LAYERS["unet_up"]
    x, w, _ = bench_conv.layer_arrays(layer, 1, jax.numpy.float32, "NHWC", jax.random.key(0))
    assert x.shape == (1, 32, 32, 128) and w.shape == (2, 2, 64, 128)
    rules = bench_conv.auto_rules(layer, x, w, "NHWC")
    phases = bench_conv.chosen(rules, "cpu", layer, x, w, "NHWC").split("/")
    assert phases == ["taps"]  # 1x1 phase kernels
    assert bench_conv.default_methods(rules, "cuda", phases) == ["auto", "taps", "xla"]
    k_shape, kwargs = bench_conv.conv2d_arguments(layer, x.shape, w.shape, "NHWC")
    flops = bench_conv.jconv.conv2d_flops(x.shape, k_shape, layout="NHWC", **kwargs)
    assert flops == 2 * 32 * 32 * 128 * 64 * 2 * 2


def test_torch_padding_where_torch_refuses_same():
    """torch refuses 'same' at a stride above 1: the stride-2 layer gets 1 a side, which
    gives lax's 28x28 output from 56x56; an odd size whose symmetric amount would not
    give lax's shape gets None (not timed)."""
    assert bench_conv.torch_padding(bench_conv.LAYERS["stride2"]) == 1
    assert bench_conv.torch_padding(bench_conv.LAYERS["resnet56"]) == "same"
    assert bench_conv.torch_padding(bench_conv.ALL_LAYERS["stem7"]) == 3
    odd = bench_conv.LAYERS["stride2"]._replace(k=2)  # 'SAME' pads (0, 0): 28 outputs
    assert bench_conv.torch_padding(odd) == 0
    odd = bench_conv.LAYERS["stride2"]._replace(k=2, hw=55)  # 0 a side gives 27, lax 28
    assert bench_conv.torch_padding(odd) is None


def test_summary_against_lax_torch_and_compile_time():
    def row(layer, method, ms, compile_s):
        return {"layer": layer, "dtype": "float32", "direction": "fwd", "method": method,
                "ms": ms, "compile_s": compile_s}  # fmt: skip

    rows = [
        *(row("a", "auto", 1.0, 5.0), row("a", "xla", 2.0, 1.0), row("a", "torch", 4.0, None)),
        *(row("b", "auto", 2.0, 1.5), row("b", "xla", 1.0, 0.1), row("b", "torch", 1.0, None)),
    ]
    for r in rows:
        same = [s for s in rows if s["layer"] == r["layer"]]
        r["vs_lax"] = next(s["ms"] for s in same if s["method"] == "xla") / r["ms"]
        r["vs_torch"] = next(s["ms"] for s in same if s["method"] == "torch") / r["ms"]
    (line,) = bench_conv.summarize(rows)
    # geometric means: lax sqrt(2 * 0.5) = 1, torch sqrt(4 * 0.5) = 1.41; compile: 'a''s 5 s
    # is over max(3 * 1 s, 2 s); 'b''s 1.5 s, 15x lax's, is under 2 s
    assert "vs lax 1.00x (lowest 0.50x b" in line and "vs torch 1.41x (lowest 0.50x b" in line
    assert "compile worst 5.00 s, limit 3.00 s (a); over max(3x lax, 2 s): a" in line


def test_bursts_split_the_trace_at_idle_gaps():
    """Kernel events (start, duration) in ns, out of order; a gap over 1000 ns starts a burst."""
    events = [(5000, 100), (0, 300), (350, 500), (7200, 10), (1200, 50), (5200, 900)]
    groups = bench_conv.bursts(events, 1000)
    assert groups == [[(0, 300), (350, 500), (1200, 50)], [(5000, 100), (5200, 900)], [(7200, 10)]]
    # the gap is measured from the latest end so far, not the last event's
    assert len(bench_conv.bursts([(0, 5000), (100, 10), (5500, 1)], 1000)) == 1


def test_device_seconds_from_the_gpu_timeline_or_none():
    """On a GPU, one positive time per repeat from the kernels' own times; on a CPU the
    trace has no GPU timeline, and the caller keeps the host's clock."""
    fn = jax.jit(lambda a: a * 2)
    a = jnp.ones(1 << 20)
    times = bench_conv.device_seconds({"double": lambda: fn(a)}, calls=2, repeats=2, gap_s=0.005)
    if jax.default_backend() == "gpu":  # seen on an H200: 0.86 us for 8 floats
        assert times is not None and len(times["double"]) == 2
        assert all(0 < t < 1e-2 for t in times["double"])
    else:
        assert times is None
    with tempfile.TemporaryDirectory() as users_trace:  # the caller's own profile goes on
        jax.profiler.start_trace(users_trace)
        try:
            assert bench_conv.device_seconds({"double": lambda: fn(a)}, calls=1) is None
        finally:
            jax.profiler.stop_trace()


def test_gpu_kernels_smoke():
    """experiments/gpu_kernels.py runs end to end; off a GPU each row says it saw no GPU
    timeline, on a GPU it lists the step's kernels."""
    from experiments import gpu_kernels

    config = gpu_kernels.KernelsConfig(
        layers=("lenet2",), methods=("xla",), directions=("fwd",), batch=2, calls=2, quiet=True
    )
    [row] = gpu_kernels.run(config)["rows"]
    assert (row["layer"], row["method"], row["batch"]) == ("lenet2", "xla", 2)
    if jax.default_backend() == "gpu":
        assert row["busy_us"] > 0 and row["kernels"]
    else:
        assert row["kernels"] is None
        assert "no GPU timeline" in gpu_kernels.format_row(row, 6)
    with pytest.raises(ValueError, match="unknown layer"):
        gpu_kernels.run(dataclasses.replace(config, layers=("nope",)))
    # untraced, for an outside profiler (experiments/gpu_ncu_forward.sh): runs, says so
    [row] = gpu_kernels.run(dataclasses.replace(config, trace=False))["rows"]
    assert row["traced"] is False and row["kernels"] is None
    assert "untraced" in gpu_kernels.format_row(row, 6)
