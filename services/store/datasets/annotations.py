"""What every import format is read into before validation: images with their boxes (pixels) or image-level labels.

The readers (:mod:`.voc`, :mod:`.csv_format`, :mod:`.folders`, :mod:`.tfrecord`) only parse; they do not open
images. :mod:`.validate` then checks each image and box against the real image.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from services.vision.boxes import Box

_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
"""A decimal number as annotation tools write it: no ``nan``/``inf``, no ``4_0`` (Python's ``float`` takes both)."""

MAX_CLASS_NAME_CHARS = 128


def parse_number(text: str) -> float:
    """A finite decimal number (``12``, ``12.5``, ``-3``, ``1e3``), strictly: anything else is a ``ValueError``.

    Python's ``float``/``int`` accept ``nan``, ``inf``, ``infinity``, digit separators (``4_0`` is 40) and
    non-ASCII digits; none of those is a coordinate a labelling tool writes.
    """
    stripped = text.strip()
    if not _NUMBER.fullmatch(stripped):
        raise ValueError(f"{text!r} is not a number")
    value = float(stripped)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is out of range")
    return value


def class_name_problem(name: str) -> str:
    """Why ``name`` can't be a class name ("" when it can): it becomes a label-map entry and a metric label."""
    if not name.strip():
        return "the class name is empty"
    if len(name) > MAX_CLASS_NAME_CHARS:
        return f"the class name is {len(name)} characters long; at most {MAX_CLASS_NAME_CHARS}"
    for ch in name:
        if unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):
            return f"the class name {name!r} holds a control character (U+{ord(ch):04X})"
    return ""


class SourceFormat(StrEnum):
    """The import formats ``spotter dataset import --format`` and ``POST /v1/datasets`` take."""

    VOC = "voc"
    CSV = "csv"
    FOLDERS = "folders"
    TFRECORD = "tfrecord"


class DatasetKind(StrEnum):
    """What a dataset holds: boxes, one label per image, or image-level labels of a detection pool."""

    DETECTION = "detection"
    CLASSIFICATION = "classification"
    POOL = "pool"


@dataclass(frozen=True, slots=True)
class ObjectAnnotation:
    """One labelled box in pixels of the image, with Pascal VOC's flags, and where it was read from."""

    label: str
    box: Box
    where: str = ""
    truncated: bool = False
    difficult: bool = False
    view: str = ""


@dataclass(slots=True)
class ImageAnnotation:
    """One image as a source describes it.

    Attributes:
        filename: the image's path as the source names it (relative to the import root), used in problems and
            stored as ``image/filename``.
        path: the image file on disk, or ``None`` when the source names a file that does not exist.
        source: the annotation file it came from (the XML, the CSV, the record file), for problems.
        where: the row or element in ``source``.
        width, height: the size the source declares, if it declares one.
        objects: boxes (detection datasets).
        labels: image-level labels (classification datasets and pools); may be empty for unlabelled pool images.
        rejected: objects the reader refused (bad box, no name, no ``<bndbox>``): an image that had objects and
            keeps none is dropped, never kept as a background image.
    """

    filename: str
    path: Path | None
    source: str
    where: str = ""
    width: int | None = None
    height: int | None = None
    objects: list[ObjectAnnotation] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    rejected: int = 0

    def classes(self) -> set[str]:
        """Every class this image counts for when splitting: its box labels and its image-level labels."""
        return {o.label for o in self.objects} | set(self.labels)
