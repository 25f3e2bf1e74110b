"""A training run's configuration, and the one place that decides which runs are refused.

Every field carries its help text (and whether it decides the parameters'
trajectory), so that the command line (main.py) is derived from the fields and
config.json records them all. The check_* functions hold every rule, each once:
the command line converts text to the field's type and nothing more. All of them
run before a run writes anything, and raise ConfigError with a message that
names the setting and says what would work.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import jax

from jconv import METHODS
from jconv.sharding import STRATEGIES

from . import checkpoints
from .data import DATASETS, Dataset
from .models import check_image_shape
from .parallel import Parallelism

CONVS = ("jconv", "flax")
MODEL_STRATEGIES = tuple(s for s in STRATEGIES if s != "batch")  # what model_parallel may be
SEEDS = 2**63  # seeds are 0 .. SEEDS - 1: NumPy refuses negative ones, JAX larger ones


class ConfigError(ValueError):
    """A configuration that cannot run; the command line turns it into exit status 2."""


def _field(default: Any, help: str, *, trajectory: bool = False, aliases: tuple[str, ...] = ()):
    """A Config field with its help text; `trajectory`: a resumed run must keep it, since it
    decides the parameters; `aliases`: more command-line spellings."""
    metadata = {"help": help, "trajectory": trajectory, "aliases": aliases}
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class Config:
    dataset: str = _field("digits", f"what to train on: {', '.join(DATASETS)}", trajectory=True)
    data_dir: str = _field("data/fashion_mnist", "where fashion_mnist's IDX .gz files are (or go)")
    download: bool = _field(True, "fetch missing fashion_mnist files")
    epochs: int = _field(40, "train until this epoch (a resumed run counts the epochs done)")
    batch_size: int = _field(32, "the global batch, split over the devices", trajectory=True)
    learning_rate: float = _field(
        5e-3, "Adam's learning rate at the start", trajectory=True, aliases=("--lr",)
    )
    lr_decay_epochs: int = _field(
        40, "cosine decay of the learning rate to 1% over this many epochs", trajectory=True
    )
    shift: int = _field(
        1, "move each training image by up to this many pixels, 0: off", trajectory=True
    )
    seed: int = _field(0, "initial parameters, each epoch's order and shifts", trajectory=True)
    conv: str = _field("jconv", "the conv layers: jconv (jconv.nnx.Conv) or flax (nnx.Conv)")
    method: str = _field("auto", f"jconv's lowering: {', '.join(METHODS)}")
    num_devices: int | None = _field(None, "use the first N devices (default: all)")
    platform: str | None = _field(
        None, "run on this platform's devices: cpu, gpu, tpu (default: JAX's default backend)"
    )
    pmap: bool = _field(False, "jax.pmap instead of jax.shard_map")
    model_parallel: str | None = _field(
        None, f"also split the convs over a 'model' mesh axis: {', '.join(MODEL_STRATEGIES)}"
    )
    model_devices: int = _field(2, "the 'model' axis' size, with model_parallel")
    resume: bool = _field(False, "continue from the newest intact checkpoint in the output dir")
    progress: bool = _field(True, "show tqdm progress bars")
    train_limit: int | None = _field(None, "train on the first N images only", trajectory=True)
    test_limit: int | None = _field(None, "score on the first N test images only")
    max_to_keep: int = _field(2, "how many checkpoints to keep")


TRAJECTORY_FIELDS = tuple(f.name for f in dataclasses.fields(Config) if f.metadata["trajectory"])


def check_config(config: Config) -> Parallelism:
    """Refuse a config that cannot run; where it runs (devices, mesh)."""
    for name, choices in (("dataset", DATASETS), ("conv", CONVS), ("method", METHODS)):
        if getattr(config, name) not in choices:
            raise ConfigError(f"{name} must be one of {choices}, got {getattr(config, name)!r}")
    if config.conv == "flax" and config.method != "auto":
        raise ConfigError(f"method {config.method!r} picks jconv's lowering: not for conv 'flax'")
    if not 0 <= config.seed < SEEDS:
        raise ConfigError(f"seed must be an integer from 0 to 2**63 - 1, got {config.seed}")
    if config.shift < 0:
        raise ConfigError(f"shift must be at least 0, got {config.shift}")
    for name in ("epochs", "batch_size", "lr_decay_epochs", "max_to_keep", "model_devices"):
        if getattr(config, name) < 1:
            raise ConfigError(f"{name} must be at least 1, got {getattr(config, name)}")
    for name in ("train_limit", "test_limit", "num_devices"):
        value = getattr(config, name)
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be at least 1 (or None), got {value}")
    if not (config.learning_rate > 0 and math.isfinite(config.learning_rate)):
        raise ConfigError(f"learning_rate must be a positive number, got {config.learning_rate}")

    try:
        devices = tuple(jax.devices(config.platform))
    except RuntimeError as e:  # an unknown platform, or one this machine does not have
        raise ConfigError(f"platform {config.platform!r}: {e}") from e
    if config.num_devices is not None:
        if config.num_devices > len(devices):
            raise ConfigError(
                f"num_devices={config.num_devices}, but only {len(devices)} devices are "
                "visible (on the CPU, set JAX_NUM_CPU_DEVICES to simulate more; on a GPU "
                "machine, platform cpu runs on them)"
            )
        if jax.process_count() > 1 and config.num_devices != len(devices):
            raise ConfigError("with several processes, every device is used: drop num_devices")
        devices = devices[: config.num_devices]
    model_devices = 1
    if config.model_parallel is not None:
        if config.model_parallel not in MODEL_STRATEGIES:
            raise ConfigError(
                f"model_parallel must be one of {MODEL_STRATEGIES}, got {config.model_parallel!r}"
            )
        if config.pmap or config.conv != "jconv":
            raise ConfigError(
                "model_parallel runs jconv.sharding.sharded_conv2d: not with pmap or conv 'flax'"
            )
        model_devices = config.model_devices
        if len(devices) % model_devices:
            raise ConfigError(
                f"model_devices={model_devices} must divide the number of devices, {len(devices)}"
            )
    parallelism = Parallelism.build(devices, pmap=config.pmap, model_devices=model_devices)
    if config.batch_size % parallelism.data_size:
        raise ConfigError(
            f"batch size {config.batch_size} cannot be split evenly over "
            f"{parallelism.data_size} devices: pick a multiple of {parallelism.data_size}"
        )
    return parallelism


def check_workdir(workdir: Path, resume: bool) -> None:
    """Refuse a workdir that cannot hold a run (a file, a path under a file, one this process
    may not write to); one that holds a run unless resuming it; and resuming from nothing."""
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(f"--out {workdir} is a file: choose a directory (new or existing)")
    existing = workdir
    while not existing.exists():  # the nearest existing ancestor: the run would create the rest
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(
            f"--out {workdir} lies under {existing}, which is a file, not a directory"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {workdir}: cannot write to {existing} (permission denied)")
    if resume:
        manager = checkpoints.manager(workdir / "checkpoints", 1, create=False)
        steps = manager.all_steps()
        manager.close()
        if not steps:
            raise ConfigError(
                f"--resume: {workdir} holds no checkpoint to resume from; drop --resume to "
                "start a new run there"
            )
        return
    found = [p.name for p in (workdir / "checkpoints", workdir / "metrics.jsonl") if _nonempty(p)]
    if found:
        raise ConfigError(
            f"{workdir} already holds a run ({', '.join(found)}): pass --resume to continue "
            "it, or choose another --out; nothing was changed"
        )


def _nonempty(path: Path) -> bool:
    if path.is_dir():
        return any(path.iterdir())
    return path.is_file() and path.stat().st_size > 0


def check_resumable(workdir: Path, config: Config) -> None:
    """A resumed run must keep the fields that decide its parameters."""
    path = workdir / "config.json"
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
            f"cannot resume the run in {workdir} with a different {', '.join(changed)}; "
            "choose another --out for a new run"
        )


def check_data(config: Config, data: Dataset) -> None:
    """Refuse data this config cannot train on."""
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
