"""experiments/train_cnn.py on a tiny configuration: the real loop, a few steps.

One reference run (1 device, 2 epochs, through main() as the command line runs
it) is shared; each other run must end with the same parameters: a resumed
run exactly, runs over 8 simulated devices (shard_map, pmap, model parallel)
to float tolerance. Runs in one process share their compiled steps, which
keeps this file's runtime down.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root: `experiments`

from test_data import write_fashion

from experiments import _data, train_cnn
from experiments.train_cnn import Config, ConfigError

needs_8_devices = pytest.mark.skipif(
    jax.device_count() < 8, reason="needs 8 simulated CPU devices (tests/conftest.py)"
)

# 128 training images: 4 steps of 32 per epoch; 64 test images.
TINY = dict(train_limit=128, test_limit=64, batch_size=32, epochs=2, progress=False)
TINY_FLAGS = ["--train-limit", "128", "--test-limit", "64", "--batch-size", "32", "--no-progress"]


def tiny(out: Path, **overrides) -> Config:
    return Config(out=str(out), **{**TINY, **overrides})


def assert_params_close(a, b, rtol=1e-4, atol=5e-5):
    """Equal up to float rounding: sums split over devices add in another order
    (seen: at most 7e-6 after 8 steps). Adam hides a gradient scaled by a constant
    (it divides by the gradient's size) but not entirely: 8x too large a gradient
    left differences of 5e-4, so these tolerances catch it."""
    flat_a, flat_b = jax.tree.leaves_with_path(a), jax.tree.leaves(b)
    assert len(flat_a) == len(flat_b) == 10  # 2 convs + 3 dense layers, kernel and bias each
    for (path, x), y in zip(flat_a, flat_b, strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=jax.tree_util.keystr(path))


whole_batch_grad = jax.jit(
    jax.value_and_grad(train_cnn.loss_and_logits, argnums=1, has_aux=True), static_argnums=0
)  # (graphdef, params, x, y) -> ((loss, logits), grads) on one device


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under directory and its bytes."""
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The command line's run on 1 device: (its out dir, its summary)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    summary = train_cnn.main(
        [*TINY_FLAGS, "--epochs", "2", "--num-devices", "1", "--out", str(out)]
    )
    return out, summary


def test_smoke_writes_metrics_plot_and_checkpoints(reference, capsys):
    out, summary = reference
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    for r in records:
        assert {"epoch", "train_loss", "test_accuracy", "steps_per_s"} <= r.keys()
        assert 0.0 <= r["test_accuracy"] <= 1.0 and r["steps_per_s"] > 0
        assert np.isfinite(r["train_loss"])
    assert records[1]["train_loss"] < records[0]["train_loss"]  # it learns
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["1", "2"]
    assert json.loads((out / "config.json").read_text())["batch_size"] == 32
    assert summary["test_accuracy"] == records[-1]["test_accuracy"]
    assert summary["devices"] == 1 and summary["conv"] == "jconv" and summary["method"] == "auto"
    assert summary["steps_per_s"] > 0 and summary["epochs_run"] == 2


def test_resume_ends_with_the_uninterrupted_parameters(reference, tmp_path):
    ref_out, ref = reference
    out = tmp_path / "run"
    train_cnn.run(tiny(out, epochs=1, num_devices=1))
    before = (out / "metrics.jsonl").read_text()
    resumed = train_cnn.run(tiny(out, epochs=2, num_devices=1, resume=True))
    assert resumed["epochs_run"] == 1  # only epoch 2 was trained again
    jax.tree.map(np.testing.assert_array_equal, resumed["params"], ref["params"])
    after = (out / "metrics.jsonl").read_text()
    assert after.startswith(before)  # appended, not truncated
    records = [json.loads(line) for line in after.splitlines()]
    ref_records = [
        json.loads(line) for line in (ref_out / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["train_loss"] for r in records] == [r["train_loss"] for r in ref_records]
    # resuming a finished run trains nothing and scores the checkpoint
    again = train_cnn.run(tiny(out, epochs=2, num_devices=1, resume=True))
    assert again["epochs_run"] == 0 and again["test_accuracy"] == ref["test_accuracy"]


@needs_8_devices
def test_8_devices_give_the_parameters_of_1(reference, tmp_path):
    _, ref = reference
    summary = train_cnn.run(tiny(tmp_path / "run", num_devices=8))
    assert summary["devices"] == 8 and summary["mode"] == "shard_map"
    assert_params_close(summary["params"], ref["params"])


@needs_8_devices
def test_pmap_gives_the_parameters_of_1(reference, tmp_path):
    _, ref = reference
    summary = train_cnn.run(tiny(tmp_path / "run", pmap=True))
    assert summary["devices"] == 8 and summary["mode"] == "pmap"
    assert_params_close(summary["params"], ref["params"])


@needs_8_devices
def test_model_parallel_gives_the_parameters_of_1(reference, tmp_path, capsys):
    _, ref = reference
    summary = train_cnn.run(tiny(tmp_path / "run", model_parallel="spatial"))
    assert "data=4 x model=2" in summary["mode"]
    # both convs see 8 rows, which split over 2 devices into 4 (at least the 2-row halo)
    assert "conv1 {'batch': 'data', 'spatial': 'model'}" in capsys.readouterr().out
    assert_params_close(summary["params"], ref["params"])


@needs_8_devices
@pytest.mark.parametrize("pmap", [False, True], ids=["shard_map", "pmap"])
def test_train_step_averages_gradients_over_devices(reference, tmp_path, pmap):
    """After one step Adam's first moment is 0.1 * the gradient: it must be the whole
    batch's mean gradient (Adam's update alone would hide a constant factor)."""
    data = _data.load_digits()
    config = tiny(tmp_path, pmap=pmap)
    layout = train_cnn.check_config(config)
    graphdef, params, _ = train_cnn.init_model(config, layout, data)
    decay_steps = config.lr_decay_epochs * 4  # TINY: 4 steps an epoch, as in the runs above
    train_step, _ = train_cnn.make_steps(graphdef, layout, config.learning_rate, decay_steps)
    tx = train_cnn.optimizer(config.learning_rate, decay_steps)
    x, y = data.x_train[:32], data.y_train[:32]
    (expected_loss, _), grads = whole_batch_grad(graphdef, params, x, y)
    feeder = train_cnn.Feeder(layout)
    params = feeder.replicate(params)
    opt_state = feeder.replicate(tx.init(params))
    _, opt_state, loss, _ = train_step(params, opt_state, *feeder.batch(x, y))
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
    assert_params_close(opt_state[0].mu, jax.tree.map(lambda g: 0.1 * g, grads), atol=1e-7)


def test_flax_conv_builds_the_same_network(tmp_path):
    """--conv flax swaps the class only: the same parameters from the same seed.
    (That the two layers compute the same is tests/test_nnx.py's business.)"""
    data = _data.load_digits()
    config = tiny(tmp_path)
    layout = train_cnn.check_config(config)
    _, p_jconv, model = train_cnn.init_model(config, layout, data)
    _, p_flax, _ = train_cnn.init_model(tiny(tmp_path, conv="flax"), layout, data)
    jax.tree.map(np.testing.assert_array_equal, p_jconv, p_flax)
    assert type(model.conv1).__module__ == "jconv.nnx"


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--dataset", "mnist"], "invalid choice: 'mnist'"),
        (["--method", "fft"], "invalid choice: 'fft'"),
        (["--conv", "torch"], "invalid choice: 'torch'"),
        (["--epochs", "0"], "expected a positive integer"),
        (["--batch-size", "lots"], "expected a positive integer"),
        (["--lr", "-1"], "expected a positive number"),
        (["--conv", "flax", "--method", "im2col"], "does not apply to --conv flax"),
        (["--model-parallel", "batch"], "invalid choice: 'batch'"),
        (["--num-devices", "99"], f"only {jax.device_count()} devices"),
    ],
)
def test_bad_flags_exit_with_a_message(flags, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        train_cnn.main([*flags, "--out", str(tmp_path / "out")])
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@needs_8_devices
def test_batch_the_devices_cannot_split(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        train_cnn.main(["--batch-size", "30", "--out", str(tmp_path / "out")])
    assert info.value.code == 2
    assert "batch size 30 cannot be split evenly over 8 devices" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="model_devices=3 must divide"):
        train_cnn.run(tiny(tmp_path, model_parallel="out_channels", model_devices=3))


def test_existing_run_is_never_overwritten(reference, tmp_path, capsys):
    out, _ = reference
    before = snapshot(out)
    # without --resume: refused
    with pytest.raises(SystemExit) as info:
        train_cnn.main([*TINY_FLAGS, "--num-devices", "1", "--out", str(out)])
    assert info.value.code == 2 and "pass --resume" in capsys.readouterr().err
    # --resume with a setting that changes the trajectory: refused
    with pytest.raises(SystemExit):
        train_cnn.main([*TINY_FLAGS, "--lr", "0.1", "--resume", "--out", str(out)])
    assert "learning_rate: 0.005 -> 0.1" in capsys.readouterr().err
    # another dataset: refused
    with pytest.raises(SystemExit):
        train_cnn.main([*TINY_FLAGS, "--dataset", "fashion_mnist", "--resume", "--out", str(out)])
    assert "dataset: 'digits' -> 'fashion_mnist'" in capsys.readouterr().err
    assert snapshot(out) == before


def test_corrupt_data_dir_exits_before_writing(tmp_path, capsys):
    data_dir = tmp_path / "fashion"
    write_fashion(data_dir)
    (data_dir / "t10k-labels-idx1-ubyte.gz").write_bytes(b"corrupt")
    flags = [
        "--dataset",
        "fashion_mnist",
        "--data-dir",
        str(data_dir),
        "--out",
        str(tmp_path / "o"),
    ]
    with pytest.raises(SystemExit) as info:
        train_cnn.main(flags)
    err = capsys.readouterr().err
    assert info.value.code == 2 and "t10k-labels-idx1-ubyte.gz: not a readable gzip file" in err
    assert not (tmp_path / "o").exists()


def test_fashion_mnist_runs_from_idx_files(tmp_path, monkeypatch):
    # 8x8 images and TINY's sizes: the model and steps of the digits runs, compiled once
    write_fashion(tmp_path / "fashion", n_train=128, n_test=64, size=8)
    monkeypatch.setattr(_data, "_fetch", lambda url: pytest.fail(f"tried to download {url}"))
    config = tiny(
        tmp_path / "out", dataset="fashion_mnist", data_dir=str(tmp_path / "fashion"), num_devices=1
    )
    summary = train_cnn.run(config)
    assert summary["dataset"] == "fashion_mnist" and summary["epochs_run"] == 2
    assert 0.0 <= summary["test_accuracy"] <= 1.0


def test_configure_devices_reads_the_environment():
    n = jax.device_count()
    train_cnn.configure_devices({"JAX_NUM_CPU_DEVICES": str(n), "JAX_PLATFORMS": "cpu"})
    train_cnn.configure_devices({"JAX_NUM_CPU_DEVICES": "4", "JAX_PLATFORMS": "cuda"})  # ignored
    with pytest.raises(ConfigError, match="must be an integer"):
        train_cnn.configure_devices({"JAX_NUM_CPU_DEVICES": "many"})
