"""A run's metrics: metrics.jsonl (one JSON object per line, one line per epoch) and its plot.

A line is written whole and ends with a newline, so a run killed while appending
leaves at most a partial last line, without one. Reading skips lines that are
not JSON objects (saying so) instead of failing, and a resumed run cuts a
partial last line off before it appends, so that records are never glued
together.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

Record = dict[str, Any]  # 'epoch' (int) and the epoch's figures


def append(path: Path, record: Record) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def read(path: Path) -> list[Record]:
    """The records in path, the last one for each epoch (a resumed epoch is written again),
    by epoch. Lines that are not JSON records are skipped with a warning on stderr."""
    by_epoch: dict[int, Record] = {}
    if not path.is_file():
        return []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            by_epoch[int(record["epoch"])] = record
        except (ValueError, TypeError, KeyError):
            message = f"warning: {path}:{number} is not a metrics record, skipped: {line[:80]!r}"
            print(message, file=sys.stderr)
    return [by_epoch[e] for e in sorted(by_epoch)]


def drop_partial_last_line(path: Path) -> None:
    """Cut off a last line that has no newline (a run stopped while appending it)."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return
    keep = data.rfind(b"\n") + 1
    with path.open("r+b") as f:
        f.truncate(keep)
    print(
        f"warning: {path} ended with a partial last record, written by a run that stopped "
        f"while appending it; dropped it: {data[keep:][:80]!r}",
        file=sys.stderr,
    )


def plot(records: list[Record], path: Path, title: str) -> None:
    """Training loss and test accuracy against epoch, as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = [r["epoch"] for r in records]
    fig = Figure(figsize=(9, 3.5))
    FigureCanvasAgg(fig)
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot(epochs, [r["train_loss"] for r in records], marker="o")
    loss_ax.set(xlabel="epoch", ylabel="training loss", yscale="log", title="loss")
    acc_ax.plot(epochs, [100 * r["test_accuracy"] for r in records], marker="o", color="C1")
    acc_ax.set(xlabel="epoch", ylabel="test accuracy (%)", title="accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.15, top=0.82, wspace=0.3)
    fig.savefig(path, dpi=100)
