"""Per-epoch checkpoints of a training run, each complete or absent, and resuming from the latest.

A checkpoint is a folder ``checkpoints/epoch-NNNN/`` (NNNN = epochs done) holding the model's weights
(``model.weights.h5``), the optimizer's variables in order (``optimizer.npz``: its step count, so the learning-rate
schedule goes on where it was, and Adam's moments) and ``state.json`` (history, early-stopping state). It is written
into a hidden temporary folder and renamed into place, so a work-horse killed mid-write (RQ's stop kills it) leaves
a stray ``.tmp-*`` folder, never a half checkpoint; the next save sweeps strays.

Variables are matched by position with their shapes checked: Keras's generated layer names change between builds,
positions do not.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from services.files import TMP_PREFIX, staging_dir

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.weights.h5"
OPTIMIZER_FILE = "optimizer.npz"
STATE_FILE = "state.json"
_EPOCH_DIR = re.compile(r"^epoch-(\d{4,})$")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A saved epoch: ``epoch`` epochs were done when it was written; ``state`` is its ``state.json``."""

    epoch: int
    path: Path
    state: dict[str, Any]


def save_checkpoint(
    folder: Path, epoch: int, model: keras.Model, state: dict[str, Any], *, keep: int = 2, best: int | None = None
) -> Checkpoint:
    """Write ``folder/epoch-NNNN/`` atomically, then keep only the newest ``keep`` checkpoints and ``best``'s."""
    folder.mkdir(parents=True, exist_ok=True)
    for stray in folder.glob(f"{TMP_PREFIX}*"):
        shutil.rmtree(stray, ignore_errors=True)  # a save that was killed half-way
    target = folder / f"epoch-{epoch:04d}"
    with staging_dir(target) as staging:  # the same epoch again (a resumed run redoing it) is swapped out whole
        model.save_weights(str(staging / WEIGHTS_FILE))
        optimizer = model.optimizer
        arrays = {f"v{i:05d}": np.asarray(v.numpy()) for i, v in enumerate(optimizer.variables)} if optimizer else {}
        np.savez(staging / OPTIMIZER_FILE, **arrays)  # type: ignore[arg-type]
        (staging / STATE_FILE).write_text(json.dumps({"epoch": epoch, **state}, indent=2, default=float) + "\n")
    saved = sorted(list_checkpoints(folder), key=lambda c: c.epoch)
    for old_checkpoint in saved[:-keep]:
        if old_checkpoint.epoch != best:
            shutil.rmtree(old_checkpoint.path, ignore_errors=True)
    return Checkpoint(epoch, target, {"epoch": epoch, **state})


def list_checkpoints(folder: Path) -> list[Checkpoint]:
    """Every complete checkpoint under ``folder``, by epoch."""
    found = []
    if folder.is_dir():
        for path in folder.iterdir():
            match = _EPOCH_DIR.match(path.name)
            if match and (path / STATE_FILE).is_file():
                found.append(Checkpoint(int(match[1]), path, json.loads((path / STATE_FILE).read_text())))
    return sorted(found, key=lambda c: c.epoch)


def latest_checkpoint(folder: Path) -> Checkpoint | None:
    """The checkpoint with the most epochs done, or None."""
    saved = list_checkpoints(folder)
    return saved[-1] if saved else None


def checkpoint_for_epoch(folder: Path, epoch: int) -> Checkpoint | None:
    return next((c for c in list_checkpoints(folder) if c.epoch == epoch), None)


def restore_checkpoint(checkpoint: Checkpoint, model: keras.Model, *, optimizer: bool = True) -> None:
    """Load a checkpoint's weights into ``model`` and (``optimizer``) its optimizer state into the model's compiled
    optimizer, building the optimizer first so its variables exist.

    Raises:
        ValueError: the checkpoint's optimizer variables do not fit (another architecture or optimizer).
    """
    opt = model.optimizer if optimizer else None
    if opt is not None and not opt.built:
        opt.build(model.trainable_variables)  # before loading: Keras's weights file carries the optimizer too
    model.load_weights(str(checkpoint.path / WEIGHTS_FILE))
    if opt is None:
        return
    with np.load(checkpoint.path / OPTIMIZER_FILE) as data:
        arrays = [data[k] for k in sorted(data.files)]
    variables = list(opt.variables)
    if len(arrays) != len(variables):
        raise ValueError(f"the checkpoint holds {len(arrays)} optimizer variables, the optimizer has {len(variables)}")
    for variable, value in zip(variables, arrays, strict=True):
        if tuple(variable.shape) != value.shape:
            raise ValueError(f"optimizer variable {variable.path}: shape {tuple(variable.shape)} != {value.shape}")
        variable.assign(value)
    log.info(
        "restored %s: epoch %d, optimizer step %d", checkpoint.path.name, checkpoint.epoch, int(opt.iterations.numpy())
    )
