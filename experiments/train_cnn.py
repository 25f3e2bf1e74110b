"""Train a LeNet whose conv layers are jconv.nnx.Conv, with optax, data parallel.

    python experiments/train_cnn.py                      # digits, no network needed
    python experiments/train_cnn.py --conv flax          # the same with flax.nnx.Conv
    python experiments/train_cnn.py --dataset fashion_mnist --data-dir data/fashion_mnist

`run(config)` holds the whole loop, so that it can be imported and tested;
`main(argv)` only parses flags into a `Config`. The training step is a pure
function of (params, opt_state, batch): the model is split once into a graph
definition and a plain dict of parameters, and merged back inside the step.
That makes it one function for `jax.shard_map` over a 'data' mesh axis (the
default) or `jax.pmap` (--pmap), for orbax to checkpoint, and for a resumed run
to end exactly where an uninterrupted one does: each epoch's order is drawn from
(seed, epoch) alone.

Outputs in --out: metrics.jsonl (one JSON object per epoch, appended on
--resume), curves.png (loss and accuracy), config.json, checkpoints/ (orbax).
A run refuses an --out that already holds a run unless --resume is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `experiments` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax import lax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import jconv
from experiments import _checkpoints, _metrics
from experiments._checkpoints import CorruptCheckpoint, NoIntactCheckpoint
from experiments._data import DATASETS, DataError, Dataset, load_dataset, random_shift
from experiments._models import DATA, MODEL, ConvFactory, LeNet, ShardedConv, check_image_shape

Params = dict[str, Any]  # nested dict of arrays: nnx.to_pure_dict of the model's nnx.Params
OptState = Any  # optax's state for Params

CONVS = ("jconv", "flax")
MODEL_STRATEGIES = tuple(s for s in jconv.sharding.STRATEGIES if s != "batch")  # --model-parallel's
# Config fields that decide the parameters' trajectory: a resumed run must keep them.
TRAJECTORY_FIELDS = (
    "dataset", "seed", "batch_size", "learning_rate", "lr_decay_epochs", "shift", "train_limit",
)  # fmt: skip


class ConfigError(ValueError):
    """A configuration that cannot run; main() turns it into a usage error."""


class TrainingError(RuntimeError):
    """Training went wrong (a non-finite loss or parameters); nothing of that epoch was saved."""


@dataclasses.dataclass(frozen=True)
class Config:
    dataset: str = "digits"  # one of _data.DATASETS
    data_dir: str = "data/fashion_mnist"  # where fashion_mnist's IDX .gz files are (or go)
    download: bool = True  # fetch missing fashion_mnist files
    out: str = "runs/train_cnn"
    epochs: int = 40  # train until this epoch (a resumed run counts the epochs done)
    batch_size: int = 32  # global batch, split over the devices
    learning_rate: float = 5e-3  # Adam's, at the start
    lr_decay_epochs: int = 40  # cosine decay to 1% over this many epochs, then constant
    shift: int = 1  # augmentation: move each training image by up to this many pixels
    seed: int = 0  # parameter init, each epoch's order and shifts
    conv: str = "jconv"  # 'jconv' (jconv.nnx.Conv) or 'flax' (flax.nnx.Conv)
    method: str = "auto"  # jconv's lowering, one of jconv.METHODS
    num_devices: int | None = None  # the first n devices; None: every device
    pmap: bool = False  # jax.pmap instead of jax.shard_map
    model_parallel: str | None = None  # split the convs over a 'model' axis: MODEL_STRATEGIES
    model_devices: int = 2  # the 'model' axis' size, with model_parallel
    resume: bool = False  # continue from the latest checkpoint in `out`
    progress: bool = True  # tqdm bars
    train_limit: int | None = None  # train on the first n training images only
    test_limit: int | None = None  # score on the first n test images only
    max_to_keep: int = 2  # checkpoints kept


# --------------------------------------------------------------------------- checks


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where a run computes: its devices, and how the batch (and model) is split."""

    devices: tuple[jax.Device, ...]
    pmap: bool
    mesh: Mesh  # ('data',), or ('data', 'model') with model_parallel

    @property
    def data_size(self) -> int:
        """Into how many slices each batch is split."""
        return self.mesh.shape[DATA]

    def describe(self) -> str:
        if self.pmap:
            return "pmap"
        if MODEL in self.mesh.shape:
            k = self.mesh.shape[MODEL]
            return f"jit + sharded_conv2d, mesh data={self.data_size} x model={k}"
        return "shard_map"


def check_config(config: Config) -> Layout:
    """Refuse a bad config before anything is loaded or written; where the run computes."""
    if config.dataset not in DATASETS:
        raise ConfigError(f"dataset must be one of {DATASETS}, got {config.dataset!r}")
    if config.conv not in CONVS:
        raise ConfigError(f"conv must be one of {CONVS}, got {config.conv!r}")
    if config.method not in jconv.METHODS:
        raise ConfigError(f"method must be one of {jconv.METHODS}, got {config.method!r}")
    if config.conv == "flax" and config.method != "auto":
        raise ConfigError("method picks jconv's lowering; it does not apply to conv='flax'")
    if config.shift < 0:
        raise ConfigError(f"shift must be at least 0, got {config.shift}")
    for name in ("epochs", "batch_size", "lr_decay_epochs", "max_to_keep"):
        if getattr(config, name) < 1:
            raise ConfigError(f"{name} must be at least 1, got {getattr(config, name)}")
    for name in ("train_limit", "test_limit", "num_devices"):
        value = getattr(config, name)
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be at least 1 (or None), got {value}")
    if not 0 <= config.seed < 2**63:  # NumPy's generators refuse negative seeds, JAX's wider ones
        raise ConfigError(f"seed must be an integer from 0 to 2**63 - 1, got {config.seed}")
    if not (config.learning_rate > 0 and math.isfinite(config.learning_rate)):
        raise ConfigError(f"learning_rate must be a positive number, got {config.learning_rate}")
    devices = tuple(jax.devices())
    if config.num_devices is not None:
        if config.num_devices > len(devices):
            raise ConfigError(
                f"num_devices={config.num_devices}, but only {len(devices)} devices are "
                "visible (on the CPU, set JAX_NUM_CPU_DEVICES to simulate more)"
            )
        if jax.process_count() > 1 and config.num_devices != len(devices):
            raise ConfigError("with several processes, every device is used: drop num_devices")
        devices = devices[: config.num_devices]
    auto = (jax.sharding.AxisType.Auto,)
    if config.model_parallel is not None:
        if config.model_parallel not in MODEL_STRATEGIES:
            raise ConfigError(
                f"model_parallel must be one of {MODEL_STRATEGIES}, got {config.model_parallel!r}"
            )
        if config.pmap or config.conv != "jconv":
            raise ConfigError(
                "model_parallel runs jconv.sharded_conv2d: not with pmap or conv='flax'"
            )
        k = config.model_devices
        if k < 1 or len(devices) % k:
            raise ConfigError(
                f"model_devices={k} must divide the number of devices, {len(devices)}"
            )
        mesh = jax.make_mesh((len(devices) // k, k), (DATA, MODEL), auto * 2, devices=devices)
    else:
        mesh = jax.make_mesh((len(devices),), (DATA,), auto, devices=devices)
    layout = Layout(devices, config.pmap, mesh)
    if config.batch_size % layout.data_size:
        raise ConfigError(
            f"batch size {config.batch_size} cannot be split evenly over {layout.data_size} "
            f"devices: pick a multiple of {layout.data_size}"
        )
    conv_factory(config, layout)  # raises if jconv.nnx is missing
    return layout


def check_out_path(out: Path) -> None:
    """Refuse an --out that cannot hold a run: a file, a path under a file, or one that
    this process may not write to."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file: choose a directory (new or existing)")
    existing = out
    while not existing.exists():  # the nearest existing ancestor: the run would create the rest
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"--out {out} lies under {existing}, which is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: cannot write to {existing} (permission denied)")


def check_out_dir(out: Path, resume: bool) -> None:
    """Refuse to start afresh over an earlier run's outputs, or to resume from nothing."""
    if resume:
        steps = _checkpoints.manager(out / "checkpoints", 1, create=False).all_steps()
        if not steps:
            raise ConfigError(
                f"--resume: {out} holds no checkpoint to resume from; drop --resume to start "
                "a new run there"
            )
        return
    found = [p.name for p in (out / "checkpoints", out / "metrics.jsonl") if _nonempty(p)]
    if found:
        raise ConfigError(
            f"{out} already holds a run ({', '.join(found)}): pass --resume to continue it, "
            "or choose another --out; nothing was changed"
        )


def _nonempty(path: Path) -> bool:
    if path.is_dir():
        return any(path.iterdir())
    return path.is_file() and path.stat().st_size > 0


def check_resumable(out: Path, config: Config) -> None:
    """A resumed run must keep the fields that decide its parameters."""
    path = out / "config.json"
    if not path.is_file():
        return
    before = json.loads(path.read_text())
    changed = [
        f"{k}: {before[k]!r} -> {getattr(config, k)!r}"
        for k in TRAJECTORY_FIELDS
        if k in before and before[k] != getattr(config, k)
    ]
    if changed:
        raise ConfigError(
            f"cannot resume the run in {out} with a different {', '.join(changed)}; "
            "choose another --out for a new run"
        )


# --------------------------------------------------------------------------- model and steps


def conv_factory(config: Config, layout: Layout) -> ConvFactory:
    """The conv layer class LeNet is built from, as config says."""
    if config.conv == "flax":
        return nnx.Conv
    if config.model_parallel is not None:
        return functools.partial(
            ShardedConv, mesh=layout.mesh, strategy=config.model_parallel, method=config.method
        )
    try:
        jconv_nnx = importlib.import_module("jconv.nnx")
    except ModuleNotFoundError as e:
        raise ConfigError("jconv.nnx is not available in this jconv; use conv='flax'") from e
    return functools.partial(jconv_nnx.Conv, method=config.method)


def init_model(config: Config, layout: Layout, data: Dataset) -> tuple[nnx.GraphDef, Params, LeNet]:
    """LeNet's graph definition, initial parameters (drawn from config.seed) and
    abstract model (its arrays only shapes)."""

    def create() -> LeNet:
        return LeNet(
            conv_factory(config, layout),
            image_shape=data.image_shape,
            num_classes=data.num_classes,
            rngs=nnx.Rngs(config.seed),
        )

    abstract = nnx.eval_shape(create)
    graphdef, _ = nnx.split(abstract)
    # One compiled initializer rather than one compilation per eager random op; on
    # the CPU unoptimized, which compiles in 1 s rather than 10 s and runs once.
    cpu = jax.default_backend() == "cpu"
    options = {"xla_backend_optimization_level": 0} if cpu else None
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
    graphdef: nnx.GraphDef, layout: Layout, learning_rate: float, decay_steps: int
) -> tuple[Callable, Callable]:
    """(train_step, eval_step), data parallel over layout's devices along DATA.

    train_step(params, opt_state, x, y) -> (params, opt_state, loss, accuracy)
    eval_step(params, x, y, mask) -> number of correct predictions where mask is 1

    Parameters are replicated; each device takes its slice of the batch, and the
    gradients are averaged over devices (lax.pmean), so every device applies the
    same update: the mean gradient of the whole batch, whatever the device count.
    With a 'model' axis the steps are written for whole arrays instead: the convs
    split their own work (jconv.sharded_conv2d) and XLA the rest, averaging the
    gradients over the batch's devices itself.

    Cached: runs in one process with the same model, layout and optimizer (a
    resumed run, tests) share the jitted steps, and so their compilations.
    """
    tx = optimizer(learning_rate, decay_steps)
    grad_fn = jax.value_and_grad(functools.partial(loss_and_logits, graphdef), has_aux=True)

    def train_step(params, opt_state, x, y, axis=DATA):
        # x: f32[B/D, H, W, C], y: i32[B/D] (this device's slice; whole arrays if axis is None)
        if axis is not None and not layout.pmap:
            # Under shard_map, the gradient of a replicated (device-invariant) input
            # comes back already summed over the axis, which pmean would leave D
            # times too large. Marked as varying, params get this device's own
            # gradient, which pmean then averages.
            params_here = lax.pcast(params, axis, to="varying")
        else:
            params_here = params
        (loss, logits), grads = grad_fn(params_here, x, y)
        accuracy = jnp.mean(jnp.argmax(logits, -1) == y)
        if axis is not None:
            grads, loss, accuracy = lax.pmean((grads, loss, accuracy), axis)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, accuracy

    def eval_step(params, x, y, mask, axis=DATA):
        # x: f32[E/D, H, W, C], y, mask: [E/D]
        logits = nnx.merge(graphdef, params)(x)
        correct = jnp.sum((jnp.argmax(logits, -1) == y) * mask)
        return correct if axis is None else lax.psum(correct, axis)

    if layout.pmap:
        devices = list(layout.devices)
        return (
            jax.pmap(train_step, DATA, in_axes=(None, None, 0, 0), out_axes=None, devices=devices),
            jax.pmap(eval_step, DATA, in_axes=(None, 0, 0, 0), out_axes=None, devices=devices),
        )
    if MODEL in layout.mesh.shape:
        replicated = NamedSharding(layout.mesh, P())
        return (
            jax.jit(functools.partial(train_step, axis=None), out_shardings=replicated),
            jax.jit(functools.partial(eval_step, axis=None), out_shardings=replicated),
        )
    shard = functools.partial(jax.shard_map, mesh=layout.mesh, out_specs=P())
    return (
        jax.jit(shard(train_step, in_specs=(P(), P(), P(DATA), P(DATA)))),
        jax.jit(shard(eval_step, in_specs=(P(), P(DATA), P(DATA), P(DATA)))),
    )


class Feeder:
    """Puts a global batch (every process holds all of it) on the devices, split along DATA."""

    def __init__(self, layout: Layout):
        self.layout = layout
        self.sharding = NamedSharding(layout.mesh, P(DATA))
        # Also under pmap: its unmapped outputs (out_axes=None) come back replicated
        # on a 1-D mesh of its devices, and inputs placed alike compile only once.
        self.replicated = NamedSharding(layout.mesh, P())

    def batch(self, *arrays: np.ndarray) -> list[jax.Array | np.ndarray]:
        if self.layout.pmap:  # [D_local, B/D, ...]: this process's devices' rows
            n, local = len(self.layout.devices), jax.local_device_count()
            start = jax.process_index() * local
            return [a.reshape(n, -1, *a.shape[1:])[start : start + local] for a in arrays]
        return [
            jax.make_array_from_callback(a.shape, self.sharding, lambda i, a=a: a[i])
            for a in arrays
        ]

    def replicate(self, tree: Any) -> Any:
        return jax.device_put(tree, self.replicated)


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The source of an epoch's order and shifts: a function of (seed, epoch) only,
    so that a resumed run sees the same batches as an uninterrupted one."""
    return np.random.default_rng([seed, epoch])


def evaluate(eval_step: Callable, feeder: Feeder, params: Params, x: np.ndarray, y: np.ndarray):
    """Fraction of (x, y) classified correctly, in padded batches of at most ~1024."""
    n = len(x)
    d = feeder.layout.data_size
    size = d * math.ceil(min(n, 1024) / d)
    correct = 0
    for start in range(0, n, size):
        xb, yb = x[start : start + size], y[start : start + size]
        pad = size - len(xb)
        mask = np.concatenate([np.ones(len(xb), np.float32), np.zeros(pad, np.float32)])
        xb = np.concatenate([xb, np.zeros((pad, *xb.shape[1:]), xb.dtype)])
        yb = np.concatenate([yb, np.zeros(pad, yb.dtype)])
        correct += eval_step(params, *feeder.batch(xb, yb, mask))
    return float(correct) / n


# --------------------------------------------------------------------------- outputs


def restore_for_resume(out: Path, config: Config, target: Any) -> _checkpoints.Restored:
    """The newest intact checkpoint in out, checked against config.epochs; writes nothing."""
    manager = _checkpoints.manager(out / "checkpoints", config.max_to_keep, create=False)
    try:
        restored = _checkpoints.restore_latest(manager, target)
    except NoIntactCheckpoint as e:
        raise ConfigError(f"{e}. Nothing was changed; start a new run with another --out") from e
    finally:
        manager.close()
    if restored.step > config.epochs:
        raise ConfigError(
            f"the newest checkpoint in {out} is the one after epoch {restored.step}: --epochs "
            f"{config.epochs} would train nothing. Pass --epochs {restored.step} to score it, or "
            "more to train on"
        )
    return restored


def set_aside(out: Path, corrupt: tuple[CorruptCheckpoint, ...]) -> None:
    """Move corrupt checkpoints newer than the one resumed from out of orbax's directory (so
    that the epochs they held can be saved again), into out/corrupt_checkpoints; say so."""
    moved = _checkpoints.set_aside(
        out / "checkpoints", [e.step for e in corrupt], out / "corrupt_checkpoints"
    )
    for error, path in zip(corrupt, moved):
        print(f"{error}; set aside in {path}")


def check_finite(epoch: int, record: dict[str, Any], params: Params) -> None:
    """Stop the run, before the epoch's checkpoint is written, if it diverged."""
    leaves = jax.tree.leaves_with_path(params)
    bad = [jax.tree_util.keystr(p) for p, a in leaves if not bool(jnp.isfinite(a).all())]
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


def run(config: Config) -> dict[str, Any]:
    """Train and evaluate as `config` says; a summary of the run.

    The summary holds the final test accuracy, the timings, the devices and the
    final parameters ('params', a dict of NumPy arrays, for tests and notebooks).
    Raises ConfigError or DataError, before anything is written, for a config
    that cannot run.
    """
    t_start = time.perf_counter()
    layout = check_config(config)
    out = Path(config.out)
    check_out_path(out)
    check_out_dir(out, config.resume)
    if config.resume:
        check_resumable(out, config)
    data = load_dataset(config.dataset, config.data_dir, download=config.download)
    data = _limit(data, config)
    check_data(config, data)
    is_main = jax.process_index() == 0

    graphdef, params, abstract_model = init_model(config, layout, data)
    if config.model_parallel is not None:
        convs = (abstract_model.conv1, abstract_model.conv2)
        plans = [c.strategies(h) for c, h in zip(convs, abstract_model.conv_heights, strict=True)]
        print(f"model parallel ({layout.describe()}): conv1 {plans[0]}, conv2 {plans[1]}")
    feeder = Feeder(layout)
    n_train = len(data.x_train)
    steps = n_train // config.batch_size  # the remainder of each epoch's order is left out
    decay_steps = config.lr_decay_epochs * steps
    tx = optimizer(config.learning_rate, decay_steps)
    params = feeder.replicate(params)
    opt_state = feeder.replicate(tx.init(params))
    train_step, eval_step = make_steps(graphdef, layout, config.learning_rate, decay_steps)
    start_epoch, corrupt = 0, ()
    if config.resume:
        restored = restore_for_resume(out, config, {"params": params, "opt_state": opt_state})
        start_epoch, corrupt = restored.step, restored.corrupt
        params, opt_state = restored.state["params"], restored.state["opt_state"]

    # Everything is checked: from here on the run writes.
    metrics_path = out / "metrics.jsonl"
    out.mkdir(parents=True, exist_ok=True)
    if config.resume:
        if is_main:
            set_aside(out, corrupt)
            _metrics.drop_partial_last_line(metrics_path)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("train_cnn: checkpoints set aside")
        print(f"resuming from the checkpoint after epoch {start_epoch} in {out}")
    elif is_main:
        (out / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    manager = _checkpoints.manager(out / "checkpoints", config.max_to_keep, create=True)

    # Compile before timing: the step is pure, so calling it and dropping the result
    # changes nothing.
    t0 = time.perf_counter()
    first = feeder.batch(data.x_train[: config.batch_size], data.y_train[: config.batch_size])
    jax.block_until_ready(train_step(params, opt_state, *first))
    compile_s = time.perf_counter() - t0

    rates, train_s = [], 0.0
    record: dict[str, Any] | None = None
    try:
        for epoch in range(start_epoch + 1, config.epochs + 1):
            params, opt_state, record = _train_epoch(
                config, epoch, data, steps, train_step, eval_step, feeder, params, opt_state
            )
            check_finite(epoch, record, params)
            _checkpoints.save(manager, epoch, {"params": params, "opt_state": opt_state})
            if is_main:
                _metrics.append(metrics_path, record)
            rates.append(record["steps_per_s"])
            train_s += record["train_time_s"]
    finally:
        manager.wait_until_finished()
        manager.close()

    if record is None:  # nothing left to train: score what the checkpoint holds
        test_accuracy = evaluate(eval_step, feeder, params, data.x_test, data.y_test)
        train_loss = None
    else:
        test_accuracy, train_loss = record["test_accuracy"], record["train_loss"]
    if is_main:
        records = _metrics.read(metrics_path)
        if records:
            title = f"LeNet on {config.dataset}, conv={config.conv}"
            _metrics.plot(records, out / "curves.png", title)

    devices, mode = layout.devices, layout.describe()
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
        "out": str(out),
        "params": jax.tree.map(np.asarray, params),
    }
    rate = "" if not rates else f", {summary['steps_per_s']:.0f} steps/s"
    print(
        f"train_cnn: {config.dataset} test accuracy {test_accuracy:.2%} after epoch "
        f"{config.epochs} ({len(rates)} run now, {train_s:.1f} s training{rate}, "
        f"{summary['total_time_s']:.1f} s in all); conv={config.conv}"
        f"{f' method={config.method}' if config.conv == 'jconv' else ''}, {len(devices)} "
        f"{summary['platform']} device{'s' if len(devices) > 1 else ''} ({mode}); outputs in {out}"
    )
    return summary


def check_data(config: Config, data: Dataset) -> None:
    """Refuse data this config cannot train on, before anything is written."""
    if len(data.x_train) < config.batch_size:
        raise ConfigError(
            f"batch size {config.batch_size} is larger than the {len(data.x_train)} training images"
        )
    try:
        check_image_shape(data.image_shape)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    h, w = data.image_shape[:2]
    most = (min(h, w) - 1) // 2  # moved that far, more than half of each image stays in view
    if config.shift > most:
        raise ConfigError(
            f"shift {config.shift} is too large for {h}x{w} images: it would move them out of "
            f"view; use at most {most}"
        )


def _limit(data: Dataset, config: Config) -> Dataset:
    return data._replace(
        x_train=data.x_train[: config.train_limit],
        y_train=data.y_train[: config.train_limit],
        x_test=data.x_test[: config.test_limit],
        y_test=data.y_test[: config.test_limit],
    )


def _train_epoch(config, epoch, data, steps, train_step, eval_step, feeder, params, opt_state):
    from tqdm.auto import tqdm

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
        batch = feeder.batch(x, data.y_train[idx])
        params, opt_state, loss, accuracy = train_step(params, opt_state, *batch)
        losses.append(loss)
        accuracies.append(accuracy)
        bar.update()
        if (i + 1) % refresh == 0:
            bar.set_postfix(loss=f"{float(loss):.4f}", acc=f"{float(accuracy):.3f}")
    jax.block_until_ready(params)
    train_time = time.perf_counter() - t0
    train_loss = float(np.mean(jax.device_get(losses)))
    train_accuracy = float(np.mean(jax.device_get(accuracies)))
    test_accuracy = evaluate(eval_step, feeder, params, data.x_test, data.y_test)
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


# --------------------------------------------------------------------------- command line


def configure_devices(environ: dict[str, str] = os.environ) -> None:
    """Simulate JAX_NUM_CPU_DEVICES CPU devices; call before JAX starts its backend.

    Only where the platform is the CPU: on a GPU or TPU the real devices are used.
    """
    value = environ.get("JAX_NUM_CPU_DEVICES")
    platforms = environ.get("JAX_PLATFORMS", "")
    if value and (platforms == "" or platforms.split(",")[0] == "cpu"):
        try:
            jax.config.update("jax_num_cpu_devices", int(value))
        except ValueError as e:
            raise ConfigError(f"JAX_NUM_CPU_DEVICES must be an integer, got {value!r}") from e


def _number_type(convert: type, minimum: float, strict: bool, what: str):
    """An argparse type: `convert` the text and require it above (or at) `minimum`."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (math.isfinite(value) and (value > minimum if strict else value >= minimum)):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


positive_int = _number_type(int, 0, True, "a positive integer")
non_negative_int = _number_type(int, 0, False, "an integer >= 0")
positive_float = _number_type(float, 0.0, True, "a positive number")


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    d = Config()
    p = argparse.ArgumentParser(
        description="Train a LeNet built on jconv.nnx.Conv (or flax.nnx.Conv) with optax.",
    )
    default = " (default: %(default)s)"
    add = p.add_argument
    add("--dataset", choices=DATASETS, default=d.dataset, help="what to train on" + default)
    add("--data-dir", default=d.data_dir, help="fashion_mnist's IDX .gz files" + default)
    add("--no-download", dest="download", action="store_false", help="never fetch missing files")
    add("--out", default=d.out, help="metrics, plot and checkpoints go here" + default)
    add("--resume", action="store_true", help="continue from --out's latest checkpoint")
    add("--epochs", type=positive_int, default=d.epochs, help="train until this epoch" + default)
    add("--batch-size", type=positive_int, default=d.batch_size, help="global batch" + default)
    add("--learning-rate", "--lr", type=positive_float, default=d.learning_rate,
        help="Adam's initial learning rate" + default)  # fmt: skip
    add("--lr-decay-epochs", type=positive_int, default=d.lr_decay_epochs,
        help="cosine decay of the learning rate over this many epochs" + default)  # fmt: skip
    add("--shift", type=non_negative_int, default=d.shift,
        help="move training images by up to this many pixels, 0: off" + default)  # fmt: skip
    add("--seed", type=int, default=d.seed, help="initial parameters, batch order" + default)
    add("--conv", choices=CONVS, default=d.conv, help="the conv layer's class" + default)
    add("--method", choices=jconv.METHODS, default=None, help="jconv's lowering (default: auto)")
    add("--num-devices", type=positive_int, default=None, help="the first N devices (default: all)")
    add("--pmap", action="store_true", help="jax.pmap instead of jax.shard_map")
    add("--model-parallel", choices=MODEL_STRATEGIES, default=None,
        help="also split the convs over a 'model' mesh axis (jconv.sharded_conv2d)")  # fmt: skip
    add("--model-devices", type=positive_int, default=d.model_devices,
        help="size of the 'model' axis, with --model-parallel" + default)  # fmt: skip
    add("--distributed", action="store_true", help="call jax.distributed.initialize() first")
    add("--no-progress", dest="progress", action="store_false", help="no progress bars")
    add("--train-limit", type=positive_int, default=None, help="use the first N training images")
    add("--test-limit", type=positive_int, default=None, help="use the first N test images")
    args = p.parse_args(argv)
    if args.conv == "flax" and args.method is not None:
        p.error("--method picks jconv's lowering; it does not apply to --conv flax")
    return p, args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser, args = parse_args(argv)
    if args.distributed:
        jax.distributed.initialize()
    try:
        configure_devices()
        fields = ({f.name for f in dataclasses.fields(Config)} & vars(args).keys()) - {"method"}
        config = Config(**{k: getattr(args, k) for k in fields}, method=args.method or "auto")
        return run(config)
    except (ConfigError, DataError) as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    except TrainingError as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")


if __name__ == "__main__":
    main()
