"""Folder per class: ``road/*.jpg``, ``not-road/*.jpg``. The class is the first folder under the root.

For classifiers every image needs a class folder. For active-learning pools (image-level labels on images that will
get boxes later) an image directly in the root is an unlabelled pool image. A folder that wraps everything (an
archive of ``data/road/...`` and ``data/not-road/...``) is looked through.
"""

from __future__ import annotations

from pathlib import Path

from services.store.datasets.annotations import ImageAnnotation
from services.store.datasets.paths import is_image_name
from services.store.datasets.problems import ProblemReport


def class_root(root: Path, images: list[Path]) -> Path:
    """``root``, or the one folder inside it that holds every image (repeatedly), so wrapping folders don't count."""
    base = root
    while True:
        firsts = {p.relative_to(base).parts[0] for p in images if len(p.relative_to(base).parts) > 1}
        at_base = any(len(p.relative_to(base).parts) == 1 for p in images)
        if len(firsts) != 1 or at_base:
            return base
        base = base / next(iter(firsts))


def read_folders(root: Path, files: list[Path], report: ProblemReport, *, pool: bool) -> list[ImageAnnotation]:
    """One :class:`ImageAnnotation` per image, labelled with its class folder.

    Args:
        root: the import root.
        files: every file under it.
        report: where problems go.
        pool: images directly in the root are unlabelled pool images instead of errors.
    """
    images = [p for p in files if is_image_name(p)]
    base = class_root(root, images)
    annotations: list[ImageAnnotation] = []
    for path in images:
        rel = path.relative_to(root).as_posix()
        parts = path.relative_to(base).parts
        labels: list[str] = []
        if len(parts) > 1:
            labels = [parts[0]]
        elif not pool:
            report.error("missing_class", rel, "", "the image is not in a class folder")
            continue
        annotations.append(ImageAnnotation(filename=rel, path=path, source=rel, labels=labels))
    return annotations
