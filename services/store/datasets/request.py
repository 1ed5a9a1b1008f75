"""What an import job is asked to do (:class:`ImportRequest`): made by the gateway from an upload's form and by
``spotter dataset import``, carried as the import job's JSON body, run by :mod:`services.training.datasets.importer`.
TensorFlow-free, and apart from the importer, so that the gateway that makes one imports none of the import's code."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from services.settings import ArchiveLimits
from services.store.datasets.annotations import SourceFormat
from services.store.datasets.validate import DEFAULT_MAX_PIXELS


@dataclass(frozen=True, slots=True)
class ImportRequest:
    """What to import and how. JSON-able (:meth:`to_dict`), so it travels as an RQ job argument.

    Attributes:
        name: the dataset's name (a new version of it is made).
        format: the source's format.
        source: a folder, or a zip / tar.gz archive.
        split: the train fraction (0.5-0.95); validation gets the rest, minus ``test_split``.
        test_split: an optional test fraction (0-0.4).
        seed: the split's seed.
        label_map: a ``.pbtxt`` to check classes against (and to number them); otherwise a ``.pbtxt`` in the
            source is used, otherwise classes are numbered from 1 by name.
        pool: folder (or image-level TFRecord) sources are an active-learning pool, not a classification set.
        archive_name: the name the archive was uploaded as, for the manifest.
        limits: how big the archive may expand.
        max_pixels: images with more pixels are dropped.
    """

    name: str
    format: SourceFormat
    source: Path
    split: float = 0.8
    test_split: float = 0.0
    seed: int = 0
    label_map: Path | None = None
    pool: bool = False
    archive_name: str | None = None
    limits: ArchiveLimits = field(default_factory=ArchiveLimits)
    max_pixels: int = DEFAULT_MAX_PIXELS

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["format"] = str(self.format)
        body["source"] = str(self.source)
        body["label_map"] = str(self.label_map) if self.label_map else None
        return body

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> ImportRequest:
        values = dict(body)
        values["format"] = SourceFormat(values["format"])
        values["source"] = Path(values["source"])
        values["label_map"] = Path(values["label_map"]) if values.get("label_map") else None
        values["limits"] = ArchiveLimits(**values.get("limits", {}))
        return cls(**values)
