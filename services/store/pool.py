"""The pool of an active-learning job: images with an image-level label (folder per class) or none, that a detector
is asked to box.

A pool is a folder (``homer/*.jpg``, ``marge/*.jpg``; images directly in the root have no label), read as
:mod:`.datasets.folders` reads it, or a pool dataset (imported with ``--pool``). Images in a class folder the
detector does not know, and images that can't be decoded, are listed as problems and left out; the rest is used.

TensorFlow-free: :func:`scan_pool_folder` is what the gateway checks at submit time (a pool where nothing is usable is
a 422 before anything is queued), without decoding more images than it must.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from services.store.datasets.annotations import DatasetKind, ImageAnnotation
from services.store.datasets.folders import read_folders
from services.store.datasets.paths import walk_files
from services.store.datasets.problems import ProblemReport
from services.store.datasets.validate import ImageProblem, ValidImage, inspect_image, validate_images


@dataclass(slots=True)
class PoolScan:
    """What a pool folder holds, as far as submit time needs to know: image counts, the class folders the detector
    does not know, and whether at least one image is usable (a known label or none, and readable)."""

    images: int = 0
    unlabelled: int = 0
    per_class: dict[str, int] = field(default_factory=dict)
    unknown: dict[str, int] = field(default_factory=dict)
    usable: bool = False
    unreadable: list[str] = field(default_factory=list)


def _labelled(root: Path, report: ProblemReport) -> list[tuple[str, Path, str | None]]:
    """``(filename, path, label or None)`` for every image file of a pool folder."""
    annotations = read_folders(root, walk_files(root), report, pool=True)
    return [(a.filename, a.path, a.labels[0] if a.labels else None) for a in annotations if a.path is not None]


def scan_pool_folder(root: Path, classes: Collection[str]) -> PoolScan:
    """Count a pool folder's images by label, and decode images only until the first usable one."""
    scan = PoolScan()
    for filename, path, label in _labelled(root, ProblemReport()):
        scan.images += 1
        if label is None:
            scan.unlabelled += 1
        elif label in classes:
            scan.per_class[label] = scan.per_class.get(label, 0) + 1
        else:
            scan.unknown[label] = scan.unknown.get(label, 0) + 1
            continue
        if not scan.usable:
            try:
                inspect_image(path)
                scan.usable = True
            except ImageProblem:
                scan.unreadable.append(filename)
    return scan


def read_pool_folder(root: Path, classes: Collection[str], report: ProblemReport, scratch: Path) -> list[ValidImage]:
    """The usable images of a pool folder (unknown classes and unreadable images go to ``report``); images that
    must be re-encoded are written under ``scratch``."""
    kept = []
    for filename, path, label in _labelled(root, report):
        if label is not None and label not in classes:
            report.error("unknown_class", filename, "", f"class folder {label!r} is not one of the detector's classes")
            continue
        kept.append((filename, path, label))
    annotations = [ImageAnnotation(f, p, f, labels=[label] if label else []) for f, p, label in kept]
    scratch.mkdir(parents=True, exist_ok=True)
    return validate_images(annotations, report, kind=DatasetKind.POOL, classes=None, reencode_dir=scratch)


def keep_known(images: list[ValidImage], classes: Collection[str], report: ProblemReport) -> list[ValidImage]:
    """A pool dataset's images whose label (if any) the detector knows; the others go to ``report``."""
    kept = []
    for image in images:
        unknown = sorted(set(image.labels) - set(classes))
        if unknown:
            report.error("unknown_class", image.filename, "", f"class {', '.join(unknown)} is not the detector's")
        elif len(image.labels) > 1:
            report.error("several_labels", image.filename, "", f"labels {image.labels}: a pool image has one or none")
        else:
            kept.append(image)
    return kept
