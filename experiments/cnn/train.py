"""Train and evaluate a LeNet whose conv layers are jconv.nnx.Conv, with optax, data parallel.

`train_and_evaluate(config, workdir)` is the whole run. The training step is a
pure function of (params, opt_state, batch): the model is split once into a
graph definition and a plain dict of parameters, merged back inside the loss.
That makes it a loss for jconv's own data-parallel steps (`data_parallel_step`
by shard_map, `pmap_data_parallel_step` by pmap), a state for orbax to
checkpoint, and lets a resumed run end exactly where an uninterrupted one does:
each epoch's order and shifts are drawn from (seed, epoch) alone, and the
learning-rate schedule does not depend on config.epochs.

Writes in workdir: metrics.jsonl (one JSON object per epoch, appended on
resume), curves.png (loss and accuracy), config.json, checkpoints/ (orbax).
Nothing is written until every check (config.py) has passed and, on resume,
an intact checkpoint has been restored; a diverged epoch stops the run before
its checkpoint is written.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jconv import nnx as jconv_nnx
from jconv.sharding import data_parallel_step, pmap_data_parallel_step

from . import checkpoints, metrics
from .config import (
    Config,
    ConfigError,
    check_config,
    check_data,
    check_resumable,
    check_workdir,
)
from .data import Dataset, load_dataset, random_shift
from .models import DATA, ConvFactory, LeNet, ShardedConv
from .parallel import Parallelism

Params = dict[str, Any]  # nested dict of arrays: nnx.to_pure_dict of the model's nnx.Params
OptState = Any  # optax's state for Params
State = dict[str, Any]  # {'params': Params, 'opt_state': OptState}, what a checkpoint holds
TrainStep = Callable[..., tuple[Params, OptState, jax.Array, jax.Array]]
EvalStep = Callable[[Params, jax.Array, jax.Array, jax.Array], jax.Array]


class TrainingError(RuntimeError):
    """Training diverged (a non-finite loss or parameter); nothing of that epoch was saved."""


# --------------------------------------------------------------------------- model and steps


def conv_factory(config: Config, parallelism: Parallelism) -> ConvFactory:
    """The conv layer class LeNet is built from, as config says."""
    if config.conv == "flax":
        return nnx.Conv
    if config.model_parallel is not None:
        return functools.partial(
            ShardedConv, mesh=parallelism.mesh, strategy=config.model_parallel, method=config.method
        )
    return functools.partial(jconv_nnx.Conv, method=config.method)


def init_model(
    config: Config, parallelism: Parallelism, data: Dataset
) -> tuple[nnx.GraphDef, Params, LeNet]:
    """LeNet's graph definition, initial parameters (drawn from config.seed) and
    abstract model (its arrays only shapes)."""

    def create() -> LeNet:
        return LeNet(
            conv_factory(config, parallelism),
            image_shape=data.image_shape,
            num_classes=data.num_classes,
            rngs=nnx.Rngs(config.seed),
        )

    abstract = nnx.eval_shape(create)
    graphdef, _ = nnx.split(abstract)
    # One compiled initializer rather than one compilation per eager random op; on
    # the CPU unoptimized, since it runs once and optimizing it takes longer than running
    # it. It runs on one of the run's own devices, whatever JAX's default device is.
    device = next(d for d in parallelism.devices if d.process_index == jax.process_index())
    options = {"xla_backend_optimization_level": 0} if device.platform == "cpu" else None
    with jax.default_device(device):
        params = jax.jit(lambda: nnx.to_pure_dict(nnx.state(create())), compiler_options=options)()
    return graphdef, params, abstract


def optimizer(learning_rate: float, decay_steps: int) -> optax.GradientTransformation:
    """Adam with a cosine decay whose length is fixed (not config.epochs), so that a
    run stopped and resumed follows the same learning rates as one that was not.
    """
    return optax.adam(optax.cosine_decay_schedule(learning_rate, decay_steps, alpha=0.01))


def loss_and_logits(
    graphdef: nnx.GraphDef, params: Params, x: jax.Array, y: jax.Array
) -> tuple[jax.Array, jax.Array]:
    logits = nnx.merge(graphdef, params)(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits


@functools.lru_cache(maxsize=8)
def make_steps(
    graphdef: nnx.GraphDef, parallelism: Parallelism, learning_rate: float, decay_steps: int
) -> tuple[TrainStep, EvalStep]:
    """(train_step, eval_step) on parallelism's devices.

    train_step(params, opt_state, (x, y)) -> (params, opt_state, loss, accuracy),
    params and opt_state as parallelism.for_step lays them out, (x, y) as
    parallelism.batch does: jconv's data_parallel_step (shard_map), or its
    pmap_data_parallel_step; each device takes its slice of the batch and the
    update is the one the whole batch's mean gradient gives, whatever the device
    count. With a 'model' axis the step is written for whole arrays instead: the
    convs split their own work (jconv.sharding.sharded_conv2d) and XLA the rest.
    eval_step(params, x, y, mask) -> the number of correct predictions where mask
    is 1, on whole arrays (parallelism.on_mesh), whatever the training step's layout.

    Cached: runs in one process with the same model, devices and optimizer (a
    resumed run, tests) share the jitted steps, and so their compilations.
    """
    tx = optimizer(learning_rate, decay_steps)

    def loss_fn(params: Params, batch: tuple[jax.Array, jax.Array]):
        # x: f32[B', H, W, C], y: i32[B'] (this device's slice, or the whole batch)
        x, y = batch
        loss, logits = loss_and_logits(graphdef, params, x, y)
        return loss, jnp.mean(jnp.argmax(logits, -1) == y)

    replicated = NamedSharding(parallelism.mesh, P())
    if parallelism.pmap:
        devices = list(parallelism.devices)
        train_step = pmap_data_parallel_step(
            loss_fn, tx, axis_name=DATA, devices=devices, has_aux=True
        )
    elif parallelism.model_parallel:

        @functools.partial(jax.jit, out_shardings=replicated)
        def train_step(params, opt_state, batch):
            (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss, accuracy

    else:
        train_step = data_parallel_step(loss_fn, tx, mesh=parallelism.mesh, axis=DATA, has_aux=True)

    @functools.partial(jax.jit, out_shardings=replicated)
    def eval_step(params, x, y, mask):
        # x: f32[E, H, W, C], y, mask: [E], split over DATA
        logits = nnx.merge(graphdef, params)(x)
        return jnp.sum((jnp.argmax(logits, -1) == y) * mask)

    return train_step, eval_step


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The source of an epoch's order and shifts: a function of (seed, epoch) only,
    so that a resumed run sees the same batches as an uninterrupted one."""
    return np.random.default_rng([seed, epoch])


def evaluate(
    eval_step: EvalStep, parallelism: Parallelism, params: Params, x: np.ndarray, y: np.ndarray
) -> float:
    """Fraction of (x, y) classified correctly, in padded batches of at most ~1024.
    params: whole, replicated on the mesh (parallelism.whole)."""
    n = len(x)
    d = parallelism.data_size
    size = d * math.ceil(min(n, 1024) / d)
    correct = 0
    for start in range(0, n, size):
        xb, yb = x[start : start + size], y[start : start + size]
        pad = size - len(xb)
        mask = np.concatenate([np.ones(len(xb), np.float32), np.zeros(pad, np.float32)])
        xb = np.concatenate([xb, np.zeros((pad, *xb.shape[1:]), xb.dtype)])
        yb = np.concatenate([yb, np.zeros(pad, yb.dtype)])
        correct += eval_step(params, *parallelism.on_mesh(xb, yb, mask))
    return float(correct) / n


# --------------------------------------------------------------------------- checks on the way


def restore_for_resume(workdir: Path, config: Config, target: State) -> checkpoints.Restored:
    """The newest intact checkpoint in workdir, checked against config.epochs; writes nothing."""
    manager = checkpoints.manager(workdir / "checkpoints", config.max_to_keep, create=False)
    try:
        restored = checkpoints.restore_latest(manager, target)
    except checkpoints.NoIntactCheckpoint as e:
        raise ConfigError(f"{e}. Nothing was changed; start a new run with another --out") from e
    finally:
        manager.close()
    if restored.step > config.epochs:
        raise ConfigError(
            f"the newest checkpoint in {workdir} is the one after epoch {restored.step}: "
            f"--epochs {config.epochs} would train nothing. Pass --epochs {restored.step} to "
            "score it, or more to train on"
        )
    return restored


def set_aside(workdir: Path, corrupt: tuple[checkpoints.CorruptCheckpoint, ...]) -> None:
    """Move corrupt checkpoints newer than the one resumed from out of orbax's directory (so
    that their epochs can be saved again) into workdir/corrupt_checkpoints; say so."""
    steps = [e.step for e in corrupt]
    moved = checkpoints.set_aside(workdir / "checkpoints", steps, workdir / "corrupt_checkpoints")
    for error, path in zip(corrupt, moved):
        print(f"{error}; set aside in {path}")


# Whether each leaf is all finite, in one program (eager jnp calls compile one per shape).
_all_finite = jax.jit(lambda tree: jax.tree.map(lambda a: jnp.isfinite(a).all(), tree))


def check_finite(epoch: int, record: metrics.Record, params: Params) -> None:
    """Stop the run, before the epoch's checkpoint is written, if it diverged."""
    finite = jax.tree.leaves_with_path(_all_finite(params))
    bad = [jax.tree_util.keystr(p) for p, ok in finite if not bool(ok)]
    if math.isfinite(record["train_loss"]) and not bad:
        return
    last = f"the one after epoch {epoch - 1}" if epoch > 1 else "none"
    raise TrainingError(
        f"epoch {epoch}: the training loss ({record['train_loss']}) or parameters "
        f"({', '.join(bad) or 'all finite'}) are not finite. Stopped before this epoch's "
        f"checkpoint and metrics were written (the newest checkpoint is {last}). A smaller "
        "--learning-rate may help, in a new --out"
    )


# --------------------------------------------------------------------------- the run


def train_and_evaluate(config: Config, workdir: str | os.PathLike) -> dict[str, Any]:
    """Train and evaluate as `config` says, writing into workdir; a summary of the run.

    The summary holds the final test accuracy, the timings, the devices and the
    final parameters ('params', a dict of NumPy arrays, for tests and notebooks).
    Raises ConfigError or data.DataError, before anything is written, for a
    config or data that cannot run, and TrainingError when an epoch diverges.
    """
    t_start = time.perf_counter()
    workdir = Path(workdir)
    parallelism = check_config(config)
    check_workdir(workdir, config.resume)
    if config.resume:
        check_resumable(workdir, config)
    data = _limit(load_dataset(config.dataset, config.data_dir, download=config.download), config)
    check_data(config, data)
    is_main = jax.process_index() == 0

    graphdef, params, abstract_model = init_model(config, parallelism, data)
    if parallelism.model_parallel:
        convs = (abstract_model.conv1, abstract_model.conv2)
        plans = [c.strategies(h) for c, h in zip(convs, abstract_model.conv_heights, strict=True)]
        print(f"model parallel ({parallelism.describe()}): conv1 {plans[0]}, conv2 {plans[1]}")
    steps = len(data.x_train) // config.batch_size  # the rest of each epoch's order is left out
    decay_steps = config.lr_decay_epochs * steps
    train_step, eval_step = make_steps(graphdef, parallelism, config.learning_rate, decay_steps)
    tx = optimizer(config.learning_rate, decay_steps)
    # (one compiled init: eager, each leaf's zeros would compile on its own)
    state = parallelism.replicated({"params": params, "opt_state": jax.jit(tx.init)(params)})
    start_epoch, corrupt = 0, ()
    if config.resume:
        restored = restore_for_resume(workdir, config, state)
        start_epoch, corrupt, state = restored.step, restored.corrupt, restored.state

    # Everything is checked: from here on the run writes.
    metrics_path = workdir / "metrics.jsonl"
    workdir.mkdir(parents=True, exist_ok=True)
    if config.resume:
        if is_main:
            set_aside(workdir, corrupt)
            metrics.drop_partial_last_line(metrics_path)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("train_cnn: checkpoints set aside")
        print(f"resuming from the checkpoint after epoch {start_epoch} in {workdir}")
    elif is_main:
        (workdir / "config.json").write_text(
            json.dumps(dataclasses.asdict(config), indent=2) + "\n"
        )
    manager = checkpoints.manager(workdir / "checkpoints", config.max_to_keep, create=True)

    # Compile before timing: the step is pure, so calling it and dropping the result
    # changes nothing.
    params, opt_state = parallelism.for_step((state["params"], state["opt_state"]))
    t0 = time.perf_counter()
    first = parallelism.batch(data.x_train[: config.batch_size], data.y_train[: config.batch_size])
    jax.block_until_ready(train_step(params, opt_state, tuple(first)))
    compile_s = time.perf_counter() - t0

    rates, train_s = [], 0.0
    record: metrics.Record | None = None
    try:
        for epoch in range(start_epoch + 1, config.epochs + 1):
            params, opt_state, record = _train_epoch(
                config, epoch, data, steps, (train_step, eval_step), parallelism, params, opt_state
            )
            check_finite(epoch, record, params)
            state = {"params": parallelism.whole(params), "opt_state": parallelism.whole(opt_state)}
            checkpoints.save(manager, epoch, state)
            if is_main:
                metrics.append(metrics_path, record)
            rates.append(record["steps_per_s"])
            train_s += record["train_time_s"]
    finally:
        manager.wait_until_finished()
        manager.close()

    if record is None:  # nothing left to train: score what the checkpoint holds
        test_accuracy = evaluate(eval_step, parallelism, state["params"], data.x_test, data.y_test)
        train_loss = None
    else:
        test_accuracy, train_loss = record["test_accuracy"], record["train_loss"]
    if is_main:
        records = metrics.read(metrics_path)
        if records:
            title = f"LeNet on {config.dataset}, conv={config.conv}"
            metrics.plot(records, workdir / "curves.png", title)

    devices, mode = parallelism.devices, parallelism.describe()
    summary = {
        "dataset": config.dataset,
        "epochs": config.epochs,
        "epochs_run": len(rates),
        "test_accuracy": test_accuracy,
        "train_loss": train_loss,
        "steps_per_s": float(np.mean(rates)) if rates else None,
        "train_time_s": train_s,
        "compile_s": compile_s,
        "total_time_s": time.perf_counter() - t_start,
        "devices": len(devices),
        "platform": devices[0].platform,
        "mode": mode,
        "model_parallel": config.model_parallel,
        "conv": config.conv,
        "method": config.method if config.conv == "jconv" else None,
        "out": str(workdir),
        "params": jax.tree.map(np.asarray, state["params"]),
    }
    rate = "" if not rates else f", {summary['steps_per_s']:.0f} steps/s"
    print(
        f"train_cnn: {config.dataset} test accuracy {test_accuracy:.2%} after epoch "
        f"{config.epochs} ({len(rates)} run now, {train_s:.1f} s training{rate}, "
        f"{summary['total_time_s']:.1f} s in all); conv={config.conv}"
        f"{f' method={config.method}' if config.conv == 'jconv' else ''}, {len(devices)} "
        f"{summary['platform']} device{'s' if len(devices) > 1 else ''} ({mode}); "
        f"outputs in {workdir}"
    )
    return summary


def _limit(data: Dataset, config: Config) -> Dataset:
    return data._replace(
        x_train=data.x_train[: config.train_limit],
        y_train=data.y_train[: config.train_limit],
        x_test=data.x_test[: config.test_limit],
        y_test=data.y_test[: config.test_limit],
    )


def _train_epoch(config, epoch, data, steps, step_fns, parallelism, params, opt_state):
    from tqdm.auto import tqdm

    train_step, eval_step = step_fns
    rng = epoch_rng(config.seed, epoch)
    order = rng.permutation(len(data.x_train))
    bar = tqdm(
        total=steps,
        desc=f"epoch {epoch}/{config.epochs}",
        unit="step",
        disable=not config.progress,
        leave=True,
    )
    losses, accuracies = [], []
    refresh = max(1, steps // 10)
    t0 = time.perf_counter()
    for i in range(steps):
        idx = order[i * config.batch_size : (i + 1) * config.batch_size]
        x = random_shift(data.x_train[idx], rng, config.shift)
        batch = tuple(parallelism.batch(x, data.y_train[idx]))
        params, opt_state, loss, accuracy = train_step(params, opt_state, batch)
        losses.append(loss)
        accuracies.append(accuracy)
        bar.update()
        if (i + 1) % refresh == 0:  # (under pmap one value per device, all the same)
            bar.set_postfix(loss=f"{np.mean(loss):.4f}", acc=f"{np.mean(accuracy):.3f}")
    jax.block_until_ready(params)
    train_time = time.perf_counter() - t0
    train_loss = float(np.mean(jax.device_get(losses)))
    train_accuracy = float(np.mean(jax.device_get(accuracies)))
    whole = parallelism.whole(params)
    test_accuracy = evaluate(eval_step, parallelism, whole, data.x_test, data.y_test)
    bar.set_postfix(
        loss=f"{train_loss:.4f}", acc=f"{train_accuracy:.3f}", test_acc=f"{test_accuracy:.3f}"
    )
    bar.close()
    record = {
        "epoch": epoch,
        "train_loss": train_loss,
        "train_accuracy": train_accuracy,
        "test_accuracy": test_accuracy,
        "steps_per_s": steps / train_time,
        "train_time_s": train_time,
    }
    return params, opt_state, record
