"""Training runs on disk: ``<data_dir>/runs/<name>/``, what a run was started with, and how far it got.

A run is what a train job trains into, and what a later train job *naming the same run* resumes::

    runs/<name>/run.json            what it trains (kind, dataset, model config, training settings) and its state
    runs/<name>/checkpoints/        epoch-NNNN/ folders (model weights, optimizer state, history), each complete
    runs/<name>/tensorboard/        TensorBoard event files
    runs/<name>/final/              the trained weights and config once the run is complete (evaluate and export
                                    read these)
    runs/<name>/owner               the id of the job training it now

TensorFlow-free: the gateway reads runs at submit time to refuse a resume that cannot work. Every file is written
aside and renamed into place (:mod:`services.files`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.errors import InvalidParameter
from services.files import atomic_write, atomic_write_json
from services.jobs.params import NAME_PATTERN

RUN_FILE = "run.json"
OWNER_FILE = "owner"

# Settings that must match for a train job to resume a run (the rest, e.g. epochs or learning rate, may change).
RESUME_KEYS = ("kind", "dataset", "dataset_version", "backbone", "alpha", "input_size", "classes")


def check_run_name(name: str) -> str:
    """A run (or model) name: 1-64 letters, digits, ``_``, ``.``, ``-``, starting with a letter or digit.

    Raises:
        InvalidParameter: any other name (it becomes a folder name).
    """
    if not NAME_PATTERN.match(name) or ".." in name:
        raise InvalidParameter(
            f"name {name!r} is not allowed: use 1-64 letters, digits, '_', '.', '-', starting with a letter or digit"
        )
    return name


@dataclass(frozen=True, slots=True)
class RunInfo:
    """``run.json``: ``identity`` (the :data:`RESUME_KEYS` values), ``config`` (the model's own config),
    ``train`` (the training settings last used), ``state`` (``training`` or ``complete``), ``epochs_done``,
    and ``history`` (per-epoch metrics so far)."""

    name: str
    identity: dict[str, Any]
    config: dict[str, Any]
    train: dict[str, Any]
    state: str = "training"
    epochs_done: int = 0
    history: dict[str, list[float]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "identity": self.identity,
            "config": self.config,
            "train": self.train,
            "state": self.state,
            "epochs_done": self.epochs_done,
            "history": self.history or {},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunInfo:
        return cls(
            name=data["name"],
            identity=dict(data["identity"]),
            config=dict(data["config"]),
            train=dict(data["train"]),
            state=str(data.get("state", "training")),
            epochs_done=int(data.get("epochs_done", 0)),
            history={k: list(v) for k, v in (data.get("history") or {}).items()},
        )

    @property
    def complete(self) -> bool:
        return self.state == "complete"


def identity_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The :data:`RESUME_KEYS` whose values differ, as ``key: old -> new``."""
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in RESUME_KEYS if k in new and old.get(k) != new.get(k)]


class RunStore:
    """The runs under one data folder."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "runs"

    def path(self, name: str) -> Path:
        return self.root / check_run_name(name)

    def info(self, name: str) -> RunInfo | None:
        """The run's ``run.json``, or None when the run does not exist (yet)."""
        path = self.path(name) / RUN_FILE
        if not path.is_file():
            return None
        return RunInfo.from_dict(json.loads(path.read_text(encoding="utf-8")))

    def write_info(self, info: RunInfo) -> None:
        atomic_write_json(self.path(info.name) / RUN_FILE, info.to_dict(), sort_keys=True)

    def owner(self, name: str) -> str | None:
        """The id of the job that last claimed the run (it may have ended since)."""
        path = self.path(name) / OWNER_FILE
        return path.read_text(encoding="utf-8").strip() or None if path.is_file() else None

    def claim(self, name: str, job_id: str) -> None:
        atomic_write(self.path(name) / OWNER_FILE, job_id + "\n")

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if NAME_PATTERN.match(p.name) and (p / RUN_FILE).is_file())
