"""Checkpoints a run can trust: saved with a digest of their arrays, restored only when intact.

orbax (tensorstore underneath) stores the arrays compressed, with no checksum of
their values: 4000 bytes of 0xff written into the middle of a checkpoint's data
file restore without complaint, as thousands of changed (finite) entries and a
few NaNs. Resuming from that trains on garbage, and once two more checkpoints
are saved, rotation deletes the good ones. So each save records a SHA-256 of
every array in the step's custom metadata (orbax's own place for it), and a
restore is accepted only if the arrays have the target's structure, shapes and
dtypes, match the digest and are finite.

A state is any pytree of arrays; here {'params': ..., 'opt_state': ...}.
"""

from __future__ import annotations

import gc
import hashlib
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

State = Any  # a pytree of arrays
DIGEST = "sha256"  # the custom metadata key under which save() records the digest


class CorruptCheckpoint(Exception):
    """A checkpoint that cannot be read, or whose arrays are not the ones saved."""

    def __init__(self, step: int, reason: str):
        super().__init__(f"the checkpoint after epoch {step} is corrupt: {reason}")
        self.step = step


class NoIntactCheckpoint(Exception):
    """Nothing to resume from: no checkpoint at all, or only corrupt ones."""


def manager(directory: Path, max_to_keep: int, create: bool) -> ocp.CheckpointManager:
    """orbax's manager for `directory`, keeping the last `max_to_keep` steps.

    With create=False nothing is written until the first save: a run inspects and
    restores its checkpoints before it has decided that it may write.
    """
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create)
    return ocp.CheckpointManager(directory.resolve(), options=options)


def digest(state: State) -> str:
    """SHA-256 over every leaf's path, dtype, shape and bytes, in tree order."""
    h = hashlib.sha256()
    for path, leaf in jax.tree.leaves_with_path(state):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{jax.tree_util.keystr(path)}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save(mngr: ocp.CheckpointManager, step: int, state: State) -> None:
    """Save `state` as `step` (asynchronously), its digest beside it."""
    mngr.save(step, args=ocp.args.StandardSave(state), custom_metadata={DIGEST: digest(state)})


def restore(mngr: ocp.CheckpointManager, step: int, target: State) -> State:
    """`step`'s state, laid out as `target` (same structure, shapes, dtypes, shardings).

    Raises CorruptCheckpoint, naming the step and what is wrong, for a checkpoint
    that cannot be read or is not what was saved. Checkpoints saved without a
    digest are checked for structure, shapes and finiteness only.
    """
    # before the read, not after it fails: a read can report from its thread between
    # orbax closing its event loop and the `except` below (1 full test run in 2, session 13)
    _drop_late_read_reports()
    try:
        state = mngr.restore(step, args=ocp.args.StandardRestore(target))
        expected = (mngr.metadata(step).custom_metadata or {}).get(DIGEST)
    except Exception as e:  # tensorstore, orbax and the file system raise many kinds
        collect_failed_reads()
        root = e  # the innermost error says what is wrong (orbax's wrappers print specs)
        while root.__cause__ or root.__context__:
            root = root.__cause__ or root.__context__
        first_line = (str(root).strip().splitlines() or [""])[0][:300]
        raise CorruptCheckpoint(
            step, f"it cannot be read ({type(root).__name__}: {first_line})"
        ) from e
    if jax.tree.structure(state) != jax.tree.structure(target):
        raise CorruptCheckpoint(step, "its arrays are not this model's")
    leaves = zip(jax.tree.leaves_with_path(state), jax.tree.leaves(target), strict=True)
    for (path, got), want in leaves:
        if _spec(got) != _spec(want):
            raise CorruptCheckpoint(
                step, f"{jax.tree_util.keystr(path)} is {_spec(got)}, this model's {_spec(want)}"
            )
    if expected is not None and digest(state) != expected:
        raise CorruptCheckpoint(step, "its arrays do not match the digest saved with them")
    for path, leaf in jax.tree.leaves_with_path(state):
        a = np.asarray(leaf)
        bad = int(a.size - np.isfinite(a).sum()) if np.issubdtype(a.dtype, np.inexact) else 0
        if bad:
            raise CorruptCheckpoint(
                step, f"{bad} non-finite values in {jax.tree_util.keystr(path)}"
            )
    return state


def collect_failed_reads() -> None:
    """Free, quietly, what a failed restore leaves behind.

    When one array cannot be read, orbax gives up on the others' reads without
    retrieving their errors: coroutines that Python would report, traceback and
    all, whenever it frees them (at exit, say, after the run's own message). The
    error that matters is already in the CorruptCheckpoint.

    The reads themselves (tensorstore's) go on in its threads, and each one that
    finishes after orbax has closed its event loop reports "Event loop is closed"
    from that thread, at a moment nobody controls, even before orbax's error reaches
    its caller. From the first restore on (`restore` installs it before reading), those
    reports, and only those, are dropped (`_drop_late_read_reports`).
    """
    _drop_late_read_reports()
    hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    try:
        gc.collect()
    finally:
        sys.unraisablehook = hook


def _is_late_read_report(unraisable: Any) -> bool:
    """A finished read's callback finding orbax's event loop closed: what it tried to
    tell has no one left to hear it."""
    error = unraisable.exc_value
    return (
        unraisable.object is None
        and isinstance(error, RuntimeError)
        and str(error) == "Event loop is closed"
    )


def _drop_late_read_reports() -> None:
    """Put a filter of _is_late_read_report in front of the process's unraisable hook
    (once); every other report goes on to the hook that was there."""
    if getattr(sys.unraisablehook, "_drops_late_read_reports", False):
        return
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if not _is_late_read_report(unraisable):
            previous(unraisable)

    hook._drops_late_read_reports = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def _spec(leaf: Any) -> str:
    """dtype[shape], e.g. 'float32[5, 5, 1, 6]'."""
    a = leaf if hasattr(leaf, "dtype") and hasattr(leaf, "shape") else np.asarray(leaf)
    return f"{np.dtype(a.dtype).name}{list(a.shape)}"


@dataclass(frozen=True)
class Restored:
    step: int  # the newest intact checkpoint's
    state: State
    corrupt: tuple[CorruptCheckpoint, ...]  # newer checkpoints that are not intact


def restore_latest(mngr: ocp.CheckpointManager, target: State) -> Restored:
    """The newest intact checkpoint, and what is wrong with any newer ones.

    Raises NoIntactCheckpoint when there is none, saying why each one failed.
    """
    steps = sorted(mngr.all_steps(), reverse=True)
    if not steps:
        raise NoIntactCheckpoint(f"{mngr.directory} holds no checkpoint to resume from")
    corrupt: list[CorruptCheckpoint] = []
    for step in steps:
        try:
            return Restored(step, restore(mngr, step, target), tuple(corrupt))
        except CorruptCheckpoint as e:
            corrupt.append(e)
    raise NoIntactCheckpoint(
        f"no intact checkpoint in {mngr.directory}: " + "; ".join(map(str, corrupt))
    )


def set_aside(directory: Path, steps: list[int], to: Path) -> list[Path]:
    """Move the step directories `steps` out of orbax's `directory` into `to` (kept, never
    deleted, for whoever wants to look at them); where each went."""
    moved = []
    for step in steps:
        target = to / str(step)
        n = 1
        while target.exists():
            target, n = to / f"{step}.{n}", n + 1
        to.mkdir(parents=True, exist_ok=True)
        shutil.move(directory / str(step), target)
        moved.append(target)
    return moved
