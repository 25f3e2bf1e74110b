"""The command line: one flag per Config field, derived from the fields, and `main(argv)`.

A field `batch_size: int = 32` becomes `--batch-size N` (default 32); a bool
that is False by default a switch (`--pmap`), one that is True a `--no-` switch
(`--no-download`); `int | None` takes an int. The flags only convert text to the
field's type: every rule is config.py's, checked once, and a broken one exits
with status 2 before anything is written, as argparse's own errors do. Beside
the fields: --out (the workdir) and --distributed.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Sequence
from typing import Any

import jax

from .config import Config, ConfigError
from .data import DataError
from .train import TrainingError, train_and_evaluate

DEFAULT_OUT = "runs/train_cnn"


def _flag_type(annotation: Any) -> type:
    """int for `int` and `int | None`; likewise float and str."""
    if isinstance(annotation, types.UnionType):
        (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    return annotation


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train a LeNet built on jconv.nnx.Conv (or flax.nnx.Conv) with optax.",
    )
    add = parser.add_argument
    hints = typing.get_type_hints(Config)
    for field in dataclasses.fields(Config):
        name, help_ = field.name.replace("_", "-"), field.metadata["help"].replace("%", "%%")
        if hints[field.name] is bool:
            if field.default:
                add(f"--no-{name}", dest=field.name, action="store_false", help=f"do not {help_}")
            else:
                add(f"--{name}", dest=field.name, action="store_true", help=help_)
            continue
        shown = "" if field.default is None else " (default: %(default)s)"
        type_ = _flag_type(hints[field.name])
        metavar = {int: "N", float: "X"}.get(type_, field.name.upper())
        kwargs = dict(dest=field.name, default=field.default, type=type_, metavar=metavar)
        add(f"--{name}", *field.metadata["aliases"], help=help_ + shown, **kwargs)
    add("--out", default=DEFAULT_OUT, help="outputs and checkpoints go here (default: %(default)s)")
    add("--distributed", action="store_true", help="call jax.distributed.initialize() first")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse argv into a Config and train; exit 2 on bad input, 1 when training diverges."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.distributed:
        jax.distributed.initialize()
    config = Config(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Config)})
    try:
        return train_and_evaluate(config, args.out)
    except (ConfigError, DataError) as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    except TrainingError as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")
