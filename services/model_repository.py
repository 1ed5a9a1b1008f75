"""The model repository as files, TensorFlow-free: ``<root>/<name>/<version>/saved_model.pb`` with integer versions
(TFS's layout), and the metadata Spotter's exports carry in ``assets.extra/spotter.json``. The gateway reads a
version's views from it; training's submit-time checks read versions and metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

METADATA_FILE = "spotter.json"


def model_versions(model_root: Path, name: str) -> list[int]:
    """The complete versions of a model (those with a ``saved_model.pb``), oldest first."""
    folder = model_root / name
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file())


def version_metadata(model_root: Path, name: str, version: int) -> dict[str, Any]:
    """A published version's ``assets.extra/spotter.json`` (empty for foreign models without one)."""
    path = model_root / name / str(version) / "assets.extra" / METADATA_FILE
    if not path.is_file():
        return {}
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data
