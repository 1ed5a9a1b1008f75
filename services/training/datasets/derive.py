"""New versions made from an existing one: read a version's records back, add images, write the next version.

Active learning uses this to grow a dataset round by round: the accepted examples go into ``train`` and the
validation split stays exactly as it was, so the validation AP of one round compares with the last. The new
version's manifest says where it came from (``source.derived_from = "<name>/<version>"``). TensorFlow (records).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import tensorflow as tf

from services.store.datasets.annotations import ObjectAnnotation
from services.store.datasets.manifest import LABEL_MAP, Manifest, SourceInfo
from services.store.datasets.problems import ProblemReport
from services.store.datasets.storage import DatasetStore
from services.store.datasets.validate import ValidImage
from services.training.datasets import features as F
from services.training.datasets.importer import ImportResult
from services.training.datasets.tfrecord import iter_records
from services.training.datasets.writer import write_version
from services.vision.boxes import Box
from services.vision.labelmap import load_label_map


def example_image(raw: bytes) -> ValidImage:
    """One of our records as a :class:`ValidImage` (bytes in memory, boxes back in pixels)."""
    feat = tf.train.Example.FromString(raw).features.feature

    def texts(key: str) -> list[str]:
        return [v.decode("utf-8") for v in feat[key].bytes_list.value] if key in feat else []

    def ints(key: str) -> list[int]:
        return list(feat[key].int64_list.value) if key in feat else []

    def floats(key: str) -> list[float]:
        return list(feat[key].float_list.value) if key in feat else []

    width, height = ints(F.WIDTH)[0], ints(F.HEIGHT)[0]
    labels, difficult, truncated, views = texts(F.OBJECT_TEXT), ints(F.DIFFICULT), ints(F.TRUNCATED), texts(F.VIEW)
    boxes = zip(floats(F.XMIN), floats(F.YMIN), floats(F.XMAX), floats(F.YMAX), strict=True)
    objects = [
        ObjectAnnotation(
            label,
            Box(xmin * width, ymin * height, xmax * width, ymax * height),
            truncated=bool(truncated[i]) if i < len(truncated) else False,
            difficult=bool(difficult[i]) if i < len(difficult) else False,
            view=views[i] if i < len(views) else "",
        )
        for i, (label, (xmin, ymin, xmax, ymax)) in enumerate(zip(labels, boxes, strict=True))
    ]
    filename = texts(F.FILENAME)[0]
    data = feat[F.ENCODED].bytes_list.value[0]
    return ValidImage(
        filename=filename,
        path=Path(filename),
        width=width,
        height=height,
        format=texts(F.FORMAT)[0],
        sha256=texts(F.SHA256)[0],
        objects=objects,
        labels=texts(F.IMAGE_TEXT),
        data=data,
    )


def read_version_images(folder: Path, manifest: Manifest) -> dict[str, list[ValidImage]]:
    """Every image of a version, by split, in shard order."""
    return {
        split: [example_image(raw) for shard in manifest.record_files(split) for raw in iter_records(folder / shard)]
        for split in manifest.counts
    }


def derive_version(
    store: DatasetStore,
    name: str,
    additions: Mapping[str, Sequence[ValidImage]],
    *,
    base_version: int | None = None,
    target: str | None = None,
    token: str = "",
) -> ImportResult:
    """The next version of ``target`` (default ``name``): version ``base_version`` (default the latest) of ``name``
    plus ``additions`` per split, with the same label map, split ratios and seed.

    Images whose class is not in the label map, or whose content is already in the dataset, are left out and
    reported (error, warning). Build additions with :func:`~services.store.datasets.validate.valid_image_from_bytes`.
    """
    base = store.manifest(name, base_version)
    folder = store.path(name, base.version)
    label_map = load_label_map(folder / LABEL_MAP)
    known = set(label_map.names.values())
    splits = read_version_images(folder, base)
    seen = {image.sha256: image.filename for images in splits.values() for image in images}
    report = ProblemReport()
    for split, images in additions.items():
        kept = splits.setdefault(split, [])
        for image in images:
            unknown = sorted(image.classes() - known)
            if unknown:
                report.error(
                    "unknown_class", image.filename, "", f"class(es) {', '.join(unknown)} not in the label map"
                )
            elif image.sha256 in seen:
                report.warning("duplicate_image", image.filename, "", f"same content as {seen[image.sha256]}; left out")
            else:
                seen[image.sha256] = image.filename
                kept.append(image)
    target_name = target or name
    source = SourceInfo(format=base.source.format, derived_from=f"{name}/{base.version}")
    with store.staging(target_name, token) as staging:
        manifest, path = write_version(
            store,
            staging,
            name=target_name,
            kind=base.kind,
            splits=splits,
            label_map=label_map,
            source=source,
            split_info=base.split,
            problems=report,
        )
    return ImportResult(manifest, path, report)
