"""TFRecord shards with the TF Object Detection API's feature keys (see :mod:`.features`): writing and reading.

This is the one module of the package that imports TensorFlow; only the import job and the CLI reach it. Records are
read as ``tf.train.Example`` messages rather than through a fixed parsing spec, so records from other tools (with
more keys, or fewer) read too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter, unless asked for

import tensorflow as tf
from PIL import Image, UnidentifiedImageError

from services.store.datasets.annotations import ImageAnnotation, ObjectAnnotation
from services.store.datasets.problems import ProblemReport
from services.store.datasets.validate import ValidImage
from services.training.datasets import features as F
from services.vision.boxes import Box
from services.vision.labelmap import LabelMap

logger = logging.getLogger(__name__)

SHARD_BYTES = 100 << 20
"""Aim for shards of about this size: big enough to read fast, small enough to shuffle across."""


def _bytes(values: Sequence[bytes]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _floats(values: Sequence[float]) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))


def _ints(values: Sequence[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def build_example(image: ValidImage, label_map: LabelMap, encoded: bytes | None = None) -> tf.train.Example:
    """The record of one validated image: boxes normalised by its real size, classes by name and label-map id."""
    data = image.encoded() if encoded is None else encoded
    w, h = float(image.width), float(image.height)
    objs = image.objects
    name = image.filename.encode("utf-8")
    feature = {
        F.ENCODED: _bytes([data]),
        F.FORMAT: _bytes([image.format.encode()]),
        F.FILENAME: _bytes([name]),
        F.SOURCE_ID: _bytes([name]),
        F.SHA256: _bytes([image.sha256.encode()]),
        F.HEIGHT: _ints([image.height]),
        F.WIDTH: _ints([image.width]),
        F.XMIN: _floats([o.box.xmin / w for o in objs]),
        F.XMAX: _floats([o.box.xmax / w for o in objs]),
        F.YMIN: _floats([o.box.ymin / h for o in objs]),
        F.YMAX: _floats([o.box.ymax / h for o in objs]),
        F.OBJECT_TEXT: _bytes([o.label.encode("utf-8") for o in objs]),
        F.OBJECT_LABEL: _ints([label_map.id(o.label) for o in objs]),
        F.DIFFICULT: _ints([int(o.difficult) for o in objs]),
        F.TRUNCATED: _ints([int(o.truncated) for o in objs]),
        F.VIEW: _bytes([o.view.encode("utf-8") for o in objs]),
        F.IMAGE_TEXT: _bytes([label.encode("utf-8") for label in image.labels]),
        F.IMAGE_LABEL: _ints([label_map.id(label) for label in image.labels]),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


def shard_count(images: Sequence[ValidImage]) -> int:
    """How many shards for these images, from their encoded size (at least one)."""
    total = sum(i.path.stat().st_size if i.data is None else len(i.data) for i in images)
    return max(1, -(-total // SHARD_BYTES))


def write_shards(
    folder: Path,
    split: str,
    images: Sequence[ValidImage],
    label_map: LabelMap,
    on_record: Callable[[], None] | None = None,
) -> dict[str, int]:
    """Write a split's images round-robin into ``<split>-NNNNN-of-MMMMM.tfrecord`` shards; records per shard name.

    An empty split gets one empty shard, so every split the manifest names has a file.
    """
    count = shard_count(images)
    names = [F.shard_name(split, i, count) for i in range(count)]
    written = dict.fromkeys(names, 0)
    writers = [tf.io.TFRecordWriter(str(folder / n)) for n in names]
    try:
        for index, image in enumerate(images):
            shard = index % count
            writers[shard].write(build_example(image, label_map).SerializeToString())
            written[names[shard]] += 1
            if on_record:
                on_record()
    finally:
        for writer in writers:
            writer.close()
    return written


def iter_records(path: Path) -> Iterator[bytes]:
    """The serialized records of a TFRecord file; a corrupt file raises ``tf.errors.DataLossError`` where it breaks."""
    for raw in tf.data.TFRecordDataset(str(path)):
        yield bytes(raw.numpy())


def read_record_files(
    paths: Sequence[Path],
    root: Path,
    label_map: LabelMap | None,
    spill_dir: Path,
    report: ProblemReport,
) -> list[ImageAnnotation]:
    """Read TF OD API records into annotations; each record's image is written to ``spill_dir`` for validation.

    Class names come from ``image/object/class/text``; records that only carry ids need ``label_map``. A record
    that can't be used is an error naming the file and record number; a file whose framing is corrupt is fatal (the
    rest of it can't be read).
    """
    spill_dir.mkdir(parents=True, exist_ok=True)
    annotations: list[ImageAnnotation] = []
    for path in paths:
        rel = path.relative_to(root).as_posix()
        number = 0
        try:
            for number, raw in enumerate(iter_records(path), start=1):
                ann = _record_annotation(raw, rel, number, label_map, spill_dir / f"{len(annotations):07d}", report)
                if ann is not None:
                    annotations.append(ann)
        except tf.errors.OpError as exc:
            report.fatal("corrupt_record", rel, f"record {number + 1}", f"not a readable TFRecord file: {exc.message}")
    return annotations


class _Features:
    """Typed reads of a ``tf.train.Example``'s features; a missing key reads as an empty list."""

    def __init__(self, example: Any) -> None:
        self._feat = example.features.feature

    def texts(self, key: str) -> list[str]:
        return [v.decode("utf-8", "replace") for v in self._feat[key].bytes_list.value] if key in self._feat else []

    def ints(self, key: str) -> list[int]:
        return list(self._feat[key].int64_list.value) if key in self._feat else []

    def floats(self, key: str) -> list[float]:
        return list(self._feat[key].float_list.value) if key in self._feat else []

    def encoded(self) -> list[bytes]:
        return list(self._feat[F.ENCODED].bytes_list.value) if F.ENCODED in self._feat else []


def _record_annotation(
    raw: bytes, rel: str, number: int, label_map: LabelMap | None, spill: Path, report: ProblemReport
) -> ImageAnnotation | None:
    where = f"record {number}"
    try:
        feat = _Features(tf.train.Example.FromString(raw))
    except Exception as exc:  # protobuf's DecodeError, whatever the runtime
        report.error("bad_record", rel, where, f"not a tf.train.Example: {exc}")
        return None
    encoded = feat.encoded()
    name = (feat.texts(F.FILENAME) or feat.texts(F.SOURCE_ID) or [f"{rel}#{number}"])[0] or f"{rel}#{number}"
    where = f"{where} ({name})"
    if not encoded:
        report.error("missing_image", rel, where, f"no {F.ENCODED}")
        return None
    spill.write_bytes(encoded[0])
    try:
        with Image.open(spill) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError):
        width = height = 0  # validation reports the image itself
    objects = _record_objects(feat, (width, height), label_map, rel, where, report)
    if objects is None:
        return None
    labels = [] if objects else _record_image_labels(feat, label_map, rel, where, report)
    declared_h, declared_w = (feat.ints(F.HEIGHT) or [0])[0], (feat.ints(F.WIDTH) or [0])[0]
    return ImageAnnotation(
        filename=name,
        path=spill,
        source=rel,
        where=where,
        width=declared_w or None,
        height=declared_h or None,
        objects=objects,
        labels=labels,
    )


def _record_objects(
    feat: _Features, size: tuple[int, int], label_map: LabelMap | None, rel: str, where: str, report: ProblemReport
) -> list[ObjectAnnotation] | None:
    """The record's boxes in the image's pixels (``size``: width, height); ``None`` when the record must be dropped
    (lists of different lengths, or every box rejected)."""
    width, height = size
    boxes = [feat.floats(F.XMIN), feat.floats(F.YMIN), feat.floats(F.XMAX), feat.floats(F.YMAX)]
    count = len(boxes[0])
    box_texts, box_ids = feat.texts(F.OBJECT_TEXT), feat.ints(F.OBJECT_LABEL)
    if (
        any(len(b) != count for b in boxes)
        or (box_texts and len(box_texts) != count)
        or (box_ids and len(box_ids) != count)
    ):
        report.error("bad_record", rel, where, "the box coordinate and class lists have different lengths")
        return None
    objects: list[ObjectAnnotation] = []
    difficult, truncated, views = feat.ints(F.DIFFICULT), feat.ints(F.TRUNCATED), feat.texts(F.VIEW)
    for i in range(count):
        obj_where = f"{where} object[{i + 1}]"
        label = _class_name(box_texts[i] if box_texts else None, box_ids[i] if box_ids else None, label_map)
        if label is None:
            report.error("unknown_class", rel, obj_where, "the box has no class text and its id is not in a label map")
            continue
        if box_texts and box_ids and label_map is not None and label_map.get(box_ids[i]) not in (None, label):
            report.warning("label_mismatch", rel, obj_where, f"id {box_ids[i]} and text {label!r} disagree; text used")
        xmin, ymin, xmax, ymax = (b[i] for b in boxes)
        objects.append(
            ObjectAnnotation(
                label=label,
                box=Box(xmin * width, ymin * height, xmax * width, ymax * height),
                where=obj_where,
                truncated=bool(truncated[i]) if i < len(truncated) else False,
                difficult=bool(difficult[i]) if i < len(difficult) else False,
                view=views[i] if i < len(views) else "",
            )
        )
    if count and not objects:
        report.error("no_valid_boxes", rel, where, "every box of the record was rejected; image dropped")
        return None
    return objects


def _record_image_labels(
    feat: _Features, label_map: LabelMap | None, rel: str, where: str, report: ProblemReport
) -> list[str]:
    """A record without boxes: its image-level class labels (text, else the label map's name of the id)."""
    image_texts, image_ids = feat.texts(F.IMAGE_TEXT), feat.ints(F.IMAGE_LABEL)
    labels: list[str] = []
    for i in range(max(len(image_texts), len(image_ids))):
        label = _class_name(
            image_texts[i] if i < len(image_texts) else None,
            image_ids[i] if i < len(image_ids) else None,
            label_map,
        )
        if label is None:
            report.error("unknown_class", rel, where, "an image-level label has no text and no label-map entry")
        else:
            labels.append(label)
    return labels


def _class_name(text: str | None, class_id: int | None, label_map: LabelMap | None) -> str | None:
    if text:
        return text
    if class_id is not None and label_map is not None:
        return label_map.get(class_id)
    return None
