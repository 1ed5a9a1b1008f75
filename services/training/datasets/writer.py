"""Write a dataset version from validated images that already have their split: shards, label map, manifest.

The import uses it after splitting; active learning uses it to make the next round's version from the last one plus
the accepted examples (``SourceInfo(derived_from="name/3")``), keeping the validation split as it was.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from services.store.datasets.annotations import DatasetKind
from services.store.datasets.manifest import (
    LABEL_MAP,
    ClassCounts,
    ClassEntry,
    FileEntry,
    Manifest,
    SourceInfo,
    SplitCounts,
    SplitInfo,
    now_iso,
    write_manifest,
)
from services.store.datasets.problems import ProblemReport
from services.store.datasets.storage import DatasetStore
from services.store.datasets.validate import ValidImage
from services.vision.labelmap import LabelMap, format_label_map


def count_split(images: Sequence[ValidImage]) -> SplitCounts:
    """Images, boxes and background images of a split, and per class the images holding it and its boxes."""
    counts = SplitCounts()
    for image in images:
        counts.images += 1
        counts.boxes += len(image.objects)
        if not image.objects and not image.labels:
            counts.background_images += 1
        for label in sorted(image.classes()):
            entry = counts.per_class.setdefault(label, ClassCounts())
            entry.images += 1
            entry.boxes += sum(1 for o in image.objects if o.label == label)
    return counts


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_version(
    store: DatasetStore,
    staging: Path,
    *,
    name: str,
    kind: DatasetKind,
    splits: Mapping[str, Sequence[ValidImage]],
    label_map: LabelMap,
    source: SourceInfo,
    split_info: SplitInfo,
    problems: ProblemReport,
    on_record: Callable[[], None] | None = None,
) -> tuple[Manifest, Path]:
    """Write the shards, label map and manifest into ``staging/version`` and publish it; (manifest, folder).

    Args:
        staging: the work folder from :meth:`DatasetStore.staging`; the rest of it (an extracted archive,
            re-encoded images the records are written from) is removed when that context ends.
    """
    from services.training.datasets.tfrecord import write_shards  # TensorFlow: only now

    out = staging / "version"
    out.mkdir()
    shard_records: dict[str, tuple[str | None, int | None]] = {}
    for split, images in splits.items():
        for shard, count in write_shards(out, split, images, label_map, on_record).items():
            shard_records[shard] = (split, count)
    (out / LABEL_MAP).write_text(format_label_map(label_map), encoding="utf-8")

    files: dict[str, FileEntry] = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = path.relative_to(out).as_posix()
        shard_split, records = shard_records.get(rel, (None, None))
        files[rel] = FileEntry(sha256=file_sha256(path), bytes=path.stat().st_size, split=shard_split, records=records)

    published: Manifest | None = None

    def finalize(folder: Path, version: int) -> None:
        nonlocal published
        published = Manifest(
            name=name,
            version=version,
            kind=kind,
            created=now_iso(),
            source=source,
            split=split_info,
            classes=[ClassEntry(id=i, name=n) for i, n in label_map],
            counts={split: count_split(images) for split, images in splits.items()},
            files=files,
            problems=problems.to_dict(),
        )
        write_manifest(folder, published)

    _, folder = store.publish(out, name, finalize)
    assert published is not None
    return published, folder
