"""tf.data pipelines for the detector: generated scenes held in memory, and TF OD API TFRecords.

Both end in the same steps: letterbox to the canvas (records only; generated scenes are already S x S), augment
(training only), encode the head's targets. Training pipelines are endless (the caller sets steps per epoch) and
give every example a stateless seed ``[seed, n]`` from its position in the stream, so a run is reproducible whatever
the parallelism; evaluation pipelines are finite, unaugmented and in order.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from services.training.augment import AugmentConfig, augment
from services.training.letterbox import boxes_to_canvas, letterbox
from services.training.synthetic import generate_scenes
from services.training.targets import encode_targets

log = logging.getLogger(__name__)

MAX_OBJECTS = 100
"""Objects per image kept by the pipelines (rows past the real ones are padding with class 0)."""

AUTOTUNE = tf.data.AUTOTUNE


@dataclass(frozen=True, slots=True)
class SceneArrays:
    """Examples held in memory: uint8 images ``[M, S, S, 3]``, boxes ``[M, MAX, 4]`` normalised ``ymin, xmin,
    ymax, xmax``, classes int32 ``[M, MAX]`` (label-map ids from 1, 0 = padding)."""

    images: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return int(self.images.shape[0])


def scene_arrays(seed: int, count: int, *, max_objects: int = MAX_OBJECTS, **scene_kwargs: Any) -> SceneArrays:
    """Generate ``count`` scenes of ``seed`` (see :func:`services.training.synthetic.generate_scenes`) into arrays.

    Generating is slower than training reads, so a run generates its scenes once and reuses them every epoch.
    """
    images: list[np.ndarray] = []
    boxes = np.zeros((count, max_objects, 4), np.float32)
    classes = np.zeros((count, max_objects), np.int32)
    for i, scene in enumerate(generate_scenes(seed, count, **scene_kwargs)):
        width, height = scene.image.size
        images.append(np.asarray(scene.image.convert("RGB"), dtype=np.uint8))
        for j, obj in enumerate(scene.objects[:max_objects]):
            b = obj.box
            boxes[i, j] = (b.ymin / height, b.xmin / width, b.ymax / height, b.xmax / width)
            classes[i, j] = obj.class_id
    return SceneArrays(np.stack(images), boxes, classes)


def finish_example(
    image: tf.Tensor,
    boxes: tf.Tensor,
    classes: tf.Tensor,
    seed: tf.Tensor | None,
    *,
    train_size: int,
    stride: int,
    num_classes: int,
    augment_config: AugmentConfig | None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Augment (when ``seed`` is given) and encode targets: ``(float32 image, targets)``."""
    if seed is not None and augment_config is not None:
        image, boxes, classes = augment(image, boxes, classes, seed, size=train_size, config=augment_config)
    else:
        image = tf.cast(image, tf.float32)
    height, width = image.shape[0], image.shape[1]
    targets = encode_targets(boxes, classes, height=height, width=width, stride=stride, num_classes=num_classes)
    return image, targets


def synthetic_dataset(
    arrays: SceneArrays,
    *,
    batch_size: int,
    stride: int,
    num_classes: int,
    seed: int | None = None,
    train_size: int | None = None,
    augment_config: AugmentConfig | None = None,
) -> tf.data.Dataset:
    """Batches of ``(image, targets)`` from in-memory scenes.

    With ``seed``, an endless stream: a seeded permutation of the scenes per pass, each augmented and cropped to
    ``train_size`` (default: the scene size). Without, one pass in order, unaugmented (validation).
    """
    size = int(arrays.images.shape[1])
    train = seed is not None
    signature = (
        tf.TensorSpec([], tf.int64),
        tf.TensorSpec(arrays.images.shape[1:], tf.uint8),
        tf.TensorSpec(arrays.boxes.shape[1:], tf.float32),
        tf.TensorSpec(arrays.classes.shape[1:], tf.int32),
    )

    def examples() -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        n = 0
        for epoch in itertools.count() if train else [0]:
            order = np.random.default_rng([seed or 0, epoch]).permutation(len(arrays)) if train else range(len(arrays))
            for i in order:
                yield n, arrays.images[i], arrays.boxes[i], arrays.classes[i]
                n += 1

    ds = tf.data.Dataset.from_generator(examples, output_signature=signature)
    crop = train_size or size

    def prepare(n: tf.Tensor, image: tf.Tensor, boxes: tf.Tensor, classes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        example_seed = tf.stack([tf.constant(seed or 0, tf.int64), n]) if train else None
        return finish_example(
            image,
            boxes,
            classes,
            example_seed,
            train_size=crop,
            stride=stride,
            num_classes=num_classes,
            augment_config=(augment_config or AugmentConfig()) if train else None,
        )

    ds = ds.map(prepare, num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=train).prefetch(AUTOTUNE)


_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/height": tf.io.FixedLenFeature([], tf.int64, default_value=0),
    "image/width": tf.io.FixedLenFeature([], tf.int64, default_value=0),
    "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
    "image/object/class/label": tf.io.VarLenFeature(tf.int64),
}


def parse_example(record: tf.Tensor, *, size: int, max_objects: int = MAX_OBJECTS) -> dict[str, tf.Tensor]:
    """Parse one TF OD API ``tf.train.Example``, decode its image and letterbox it to ``size``.

    Returns:
        ``image`` uint8 ``[size, size, 3]``, ``boxes`` float32 ``[max_objects, 4]`` normalised to the canvas,
        ``classes`` int32 ``[max_objects]`` (0 = padding), and the original ``height`` and ``width``.
    """
    example = parse_native(record, max_objects=max_objects)
    canvas, scale = letterbox(example["image"], size)
    boxes = boxes_to_canvas(example["boxes"], example["height"], example["width"], scale, size)
    return {**example, "image": canvas, "boxes": tf.ensure_shape(boxes, [max_objects, 4])}


def parse_native(record: tf.Tensor, *, max_objects: int = MAX_OBJECTS) -> dict[str, tf.Tensor]:
    """Parse one TF OD API ``tf.train.Example`` and decode its image at its own size (decoded once: crops of it
    are cut from this one tensor).

    Returns:
        ``image`` uint8 ``[H, W, 3]``, ``boxes`` float32 ``[max_objects, 4]`` normalised to the image, ``classes``
        int32 ``[max_objects]`` (0 = padding), and ``height`` and ``width``.
    """
    parsed = tf.io.parse_single_example(record, _FEATURES)
    image = tf.io.decode_image(parsed["image/encoded"], channels=3, expand_animations=False)
    image = tf.ensure_shape(image, [None, None, 3])
    shape = tf.shape(image)

    def dense(key: str) -> tf.Tensor:
        return tf.sparse.to_dense(parsed[key])[:max_objects]

    boxes = tf.stack(
        [
            dense("image/object/bbox/ymin"),
            dense("image/object/bbox/xmin"),
            dense("image/object/bbox/ymax"),
            dense("image/object/bbox/xmax"),
        ],
        axis=-1,
    )
    boxes = tf.clip_by_value(boxes, 0.0, 1.0)
    classes = tf.cast(dense("image/object/class/label"), tf.int32)
    pad = max_objects - tf.shape(classes)[0]
    return {
        "image": image,
        "boxes": tf.ensure_shape(tf.pad(boxes, [[0, pad], [0, 0]]), [max_objects, 4]),
        "classes": tf.ensure_shape(tf.pad(classes, [[0, pad]]), [max_objects]),
        "height": shape[0],
        "width": shape[1],
    }


def tfrecord_dataset(
    files: Sequence[str | Path],
    *,
    size: int,
    batch_size: int,
    stride: int,
    num_classes: int,
    seed: int | None = None,
    train_size: int | None = None,
    augment_config: AugmentConfig | None = None,
    shuffle_buffer: int = 1024,
) -> tf.data.Dataset:
    """Batches of ``(image, targets)`` from TF OD API TFRecord files (the datasets' shards), letterboxed to ``size``.

    With ``seed``: endless, shuffled (files and records), augmented and cropped to ``train_size``. Without: one pass
    in file order, unaugmented.
    """
    paths = [str(f) for f in files]
    if not paths:
        raise ValueError("no TFRecord files given")
    train = seed is not None
    ds = tf.data.Dataset.from_tensor_slices(paths)
    if train:
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(4, len(paths)))
    if train:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.map(lambda r: parse_example(r, size=size), num_parallel_calls=AUTOTUNE, deterministic=True)
    crop = train_size or size

    def prepare(n: tf.Tensor, example: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        example_seed = tf.stack([tf.constant(seed or 0, tf.int64), n]) if train else None
        return finish_example(
            example["image"],
            example["boxes"],
            example["classes"],
            example_seed,
            train_size=crop,
            stride=stride,
            num_classes=num_classes,
            augment_config=(augment_config or AugmentConfig()) if train else None,
        )

    ds = ds.enumerate().map(prepare, num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=train).prefetch(AUTOTUNE)
