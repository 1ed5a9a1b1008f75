"""A job reporter for the bench scripts that run training in process: progress to the log, artifacts to a folder."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("benchmarks")


class FolderReporter:
    """What a job function reports to (``id``, ``update``, ``write_json``), kept in ``folder/jobs/<name>``."""

    def __init__(self, folder: Path, name: str) -> None:
        self.artifacts = folder / "jobs" / name
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self._id = name

    @property
    def id(self) -> str:
        return self._id

    def update(self, **fields: Any) -> None:
        if fields.get("message"):
            log.info("%s: %s", self._id, fields["message"])

    def write_json(self, name: str, body: Any) -> Path:
        path = self.artifacts / name
        path.write_text(json.dumps(body, default=str, indent=2))
        return path
