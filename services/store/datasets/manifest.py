"""``manifest.json``: what a dataset version holds, where it came from, and the problems its import found.

Read by the gateway (``GET /v1/datasets``), the CLI and training, without TensorFlow. The summary table (ID, NAME,
Train, Validate[, Test]) is derived from ``counts``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from services.store.datasets.annotations import DatasetKind, SourceFormat

MANIFEST = "manifest.json"
LABEL_MAP = "label_map.pbtxt"
SCHEMA_VERSION = 1


class ClassEntry(BaseModel):
    id: int
    name: str


class ClassCounts(BaseModel):
    """Images holding the class, and boxes of it (0 for image-level datasets)."""

    images: int = 0
    boxes: int = 0


class SplitCounts(BaseModel):
    images: int = 0
    boxes: int = 0
    background_images: int = 0
    per_class: dict[str, ClassCounts] = Field(default_factory=dict)


class FileEntry(BaseModel):
    """A file of the version: its sha256, size, and for record shards the split and the number of records."""

    sha256: str
    bytes: int
    split: str | None = None
    records: int | None = None


class SourceInfo(BaseModel):
    format: SourceFormat
    archive: str | None = None
    archive_sha256: str | None = None
    label_map: str | None = None
    derived_from: str | None = None


class SplitInfo(BaseModel):
    ratios: dict[str, float]
    seed: int
    rule: str = "iterative-stratification"


class Manifest(BaseModel):
    """Everything a dataset version says about itself."""

    schema_version: int = SCHEMA_VERSION
    name: str
    version: int
    kind: DatasetKind
    created: str
    source: SourceInfo
    split: SplitInfo
    classes: list[ClassEntry]
    counts: dict[str, SplitCounts]
    files: dict[str, FileEntry]
    problems: dict[str, Any] = Field(default_factory=dict)

    def summary_rows(self) -> list[dict[str, Any]]:
        """One row per class: id, name, then per split ``{"images", "boxes"}`` (the CLI and API table)."""
        rows = []
        for cls in self.classes:
            row: dict[str, Any] = {"id": cls.id, "name": cls.name}
            for split, counts in self.counts.items():
                row[split] = counts.per_class.get(cls.name, ClassCounts()).model_dump()
            rows.append(row)
        return rows

    def totals(self) -> dict[str, dict[str, int]]:
        return {s: {"images": c.images, "boxes": c.boxes} for s, c in self.counts.items()}

    def record_files(self, split: str) -> list[str]:
        """The record shards of a split, by name, relative to the version's folder."""
        return sorted(name for name, f in self.files.items() if f.split == split)

    def summary(self) -> dict[str, Any]:
        """What listings show: name, version, kind, created, source format, class count, totals, problem counts."""
        return {
            "name": self.name,
            "version": self.version,
            "kind": self.kind,
            "created": self.created,
            "format": self.source.format,
            "classes": len(self.classes),
            "totals": self.totals(),
            "problems": self.problems.get("counts", {}),
        }


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def read_manifest(version_dir: Path) -> Manifest:
    return Manifest.model_validate_json((version_dir / MANIFEST).read_bytes())


def write_manifest(version_dir: Path, manifest: Manifest) -> None:
    """Write ``manifest.json`` into a version folder that is still being staged (it is never rewritten after)."""
    text = json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=False)
    (version_dir / MANIFEST).write_text(text + "\n", encoding="utf-8")
