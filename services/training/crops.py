"""Training at the serving scale: native-scale crops of large images, for detectors that are served tiled.

The gateway cuts a large image into ``S x S`` views at the image's own scale (:mod:`services.vision.tiling`); a
model trained on whole images letterboxed to S sees its objects many times smaller than that. This pipeline feeds
it what it will be served instead. Per record visit:

1. the image is decoded **once**, at its own size (:func:`services.training.inputs.parse_native`), and every crop is
   cut from that one tensor, so a 4000x3000 image costs one decode and 36 MB, whatever the number of crops;
2. :func:`plan_crops` places one crop around each object (up to ``max_object_crops``; each such object lies fully
   inside its crop, at a random offset: another one at each visit) and ``background_ratio`` of the crops at random
   positions, mostly showing clutter without a target;
3. the crops are shuffled among those of other records, then get the usual box-aware augmentation
   (:func:`services.training.augment.augment`: scale jitter and crop, flip, colour) *after* the crop.

An axis of the image shorter than the crop is taken whole from offset 0 and padded with zeros at the far end, as a
gateway tile along such an axis is letterboxed to the top-left of its canvas.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import tensorflow as tf

from services.jobs.params import TrainParams
from services.training.augment import AugmentConfig, crop_window
from services.training.detector import DetectorConfig
from services.training.inputs import AUTOTUNE, MAX_OBJECTS, finish_example, parse_native
from services.training.views import choose_views, size_stats
from services.vision.tiling import Views

if TYPE_CHECKING:
    from services.training.models import ModelSpec

log = logging.getLogger(__name__)

MAX_CROPS = 64
"""Most crops cut from one record visit (object crops first): bounds the memory of one visit at 64 S x S crops."""
CROP_BUFFER = 256
"""Crops shuffled together, so that a batch mixes crops of several images."""


def plan_crops(
    boxes: tf.Tensor,
    classes: tf.Tensor,
    height: tf.Tensor,
    width: tf.Tensor,
    seed: tf.Tensor,
    *,
    size: int,
    background_ratio: float,
    max_object_crops: int = MAX_CROPS,
) -> tf.Tensor:
    """Top-left corners ``[K, 2]`` int32 ``(y, x)`` of the ``size x size`` crops of one image.

    Args:
        boxes: ``[M, 4]`` ``ymin, xmin, ymax, xmax`` normalised to the image.
        classes: ``[M]``, 0 for padding rows.
        height, width: The image's size in pixels.
        seed: A stateless seed ``[2]``.
        size: The crop side.
        background_ratio: Fraction (0-0.9) of the crops placed uniformly at random instead of around an object.
        max_object_crops: At most this many objects (a random choice of them when there are more) get a crop.

    Returns:
        The object crops first (one per chosen object: the object fully inside, when it fits in a crop, at a uniform
        random offset among those that keep it inside and the crop inside the image), then
        ``round(k * r / (1 - r))`` background crops (at least one for an image without objects), at most
        :data:`MAX_CROPS` in all.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
    hw = tf.cast(tf.stack([height, width]), tf.float32)
    span = tf.maximum(tf.cast(tf.stack([height, width]), tf.int32) - size, 0)  # largest offset per axis
    valid = tf.where(classes > 0)[:, 0]
    order = tf.argsort(tf.random.stateless_uniform(tf.shape(valid), seeds[0]))
    chosen = tf.gather(valid, order)[: min(max_object_crops, MAX_CROPS)]
    pixels = tf.gather(tf.cast(boxes, tf.float32), chosen) * tf.concat([hw, hw], axis=0)
    low_corner, high_corner = pixels[:, :2], pixels[:, 2:]
    # The crop [o, o + size) holds [low, high] when high - size <= o <= low.
    lo = tf.clip_by_value(tf.cast(tf.math.ceil(high_corner), tf.int32) - size, 0, span)
    hi = tf.clip_by_value(tf.cast(tf.math.floor(low_corner), tf.int32), 0, span)
    # An object larger than the crop: centre the crop on it (the whole-image view finds it at serving time).
    centre = tf.clip_by_value(tf.cast(tf.round((low_corner + high_corner) / 2.0), tf.int32) - size // 2, 0, span)
    too_big = lo > hi
    lo, hi = tf.where(too_big, centre, lo), tf.where(too_big, centre, hi)
    u = tf.random.stateless_uniform(tf.shape(lo), seeds[1])
    object_offsets = tf.minimum(lo + tf.cast(u * tf.cast(hi - lo + 1, tf.float32), tf.int32), hi)
    k = tf.shape(chosen)[0]
    ratio = min(max(background_ratio, 0.0), 0.9)
    wanted = tf.cast(tf.round(tf.cast(k, tf.float32) * ratio / (1.0 - ratio)), tf.int32)
    wanted = tf.where(k == 0, tf.maximum(wanted, 1), wanted)
    n_background = tf.minimum(wanted, tf.maximum(MAX_CROPS - k, 0))
    v = tf.random.stateless_uniform(tf.stack([n_background, 2]), seeds[2])
    background = tf.minimum(tf.cast(v * tf.cast(span + 1, tf.float32), tf.int32), span)
    return tf.concat([object_offsets, background], axis=0)


def cut_crops(
    example: dict[str, tf.Tensor], seed: tf.Tensor, *, size: int, background_ratio: float, min_visible: float
) -> dict[str, tf.Tensor]:
    """The crops of one decoded record (see :func:`plan_crops`): ``image`` uint8 ``[K, size, size, 3]``,
    ``boxes`` ``[K, M, 4]`` normalised to each crop, ``classes`` ``[K, M]`` (0 for objects a crop does not hold)."""
    image, boxes, classes = example["image"], example["boxes"], example["classes"]
    offsets = plan_crops(
        boxes, classes, example["height"], example["width"], seed, size=size, background_ratio=background_ratio
    )
    max_objects = boxes.shape[0]
    crops, crop_boxes, crop_classes = tf.map_fn(
        lambda offset: crop_window(image, boxes, classes, offset=offset, size=size, min_visible=min_visible),
        offsets,
        fn_output_signature=(
            tf.TensorSpec([size, size, 3], tf.uint8),
            tf.TensorSpec([max_objects, 4], tf.float32),
            tf.TensorSpec([max_objects], tf.int32),
        ),
    )
    return {"image": crops, "boxes": crop_boxes, "classes": crop_classes, "offsets": offsets}


def tiles_dataset(
    files: Sequence[str | Path],
    *,
    crop_size: int,
    batch_size: int,
    stride: int,
    num_classes: int,
    seed: int,
    background_ratio: float,
    augment_config: AugmentConfig | None = None,
    shuffle_buffer: int = 1024,
) -> tf.data.Dataset:
    """Endless training batches of ``(image, targets)``: native-scale ``crop_size`` crops of TF OD API records (the
    module's text), shuffled and augmented; reproducible from ``seed`` (each record visit and each crop get a
    stateless seed from their position in the stream)."""
    paths = [str(f) for f in files]
    if not paths:
        raise ValueError("no TFRecord files given")
    config = augment_config or AugmentConfig()
    ds = tf.data.Dataset.from_tensor_slices(paths).shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(4, len(paths)))
    # Encoded records are shuffled (small); decoded images never wait in a buffer.
    ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()

    def decode_and_cut(n: tf.Tensor, record: tf.Tensor) -> dict[str, tf.Tensor]:
        visit_seed = tf.stack([tf.constant(seed, tf.int64), n])
        example = parse_native(record, max_objects=MAX_OBJECTS)
        return cut_crops(
            example, visit_seed, size=crop_size, background_ratio=background_ratio, min_visible=config.min_visible
        )

    # Two records in flight at most: memory is bounded by two decoded images plus their crops.
    ds = ds.enumerate().map(decode_and_cut, num_parallel_calls=2, deterministic=True)
    ds = ds.map(lambda c: (c["image"], c["boxes"], c["classes"])).unbatch()
    ds = ds.shuffle(CROP_BUFFER, seed=seed, reshuffle_each_iteration=True)

    def prepare(n: tf.Tensor, crop: tuple[tf.Tensor, tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        image, boxes, classes = crop
        crop_seed = tf.stack([tf.constant(seed + 1, tf.int64), n])
        return finish_example(
            image,
            boxes,
            classes,
            crop_seed,
            train_size=crop_size,
            stride=stride,
            num_classes=num_classes,
            augment_config=config,
        )

    ds = ds.enumerate().map(prepare, num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)


NO_AUGMENT = AugmentConfig(flip=False, scale_range=(1.0, 1.0), brightness=0.0, contrast=(1.0, 1.0))
"""Crops as cut (validation crops)."""


def scan_split(files: Sequence[Path]) -> list[tuple[int, int, list[tuple[float, float]]]]:
    """``(width, height, [(box width, box height), ...])`` in pixels for each record of ``files``: what the records
    declare, nothing decoded."""
    from services.training.datasets.derive import example_image
    from services.training.datasets.tfrecord import iter_records

    sizes = []
    for path in files:
        for raw in iter_records(path):
            image = example_image(raw)
            boxes = [(o.box.xmax - o.box.xmin, o.box.ymax - o.box.ymin) for o in image.objects]
            sizes.append((image.width, image.height, boxes))
    return sizes


def crops_per_pass(sizes: Sequence[tuple[int, int, list[tuple[float, float]]]], background_ratio: float) -> int:
    """How many crops one pass over the records gives (see :func:`plan_crops`): one training epoch's worth."""
    ratio = min(max(background_ratio, 0.0), 0.9)
    total = 0
    for _, _, boxes in sizes:
        k = min(len(boxes), MAX_CROPS)
        background = round(k * ratio / (1.0 - ratio)) if k else 1
        total += k + min(background, MAX_CROPS - k)
    return total


@dataclass(frozen=True, slots=True)
class TrainViews:
    """What a train job decided about views (see :func:`decide_views`)."""

    views: Views
    reason: str
    crop_size: int | None = None
    object_size_px: tuple[float, float] | None = None
    crops: int = 0  # crops per pass over the train split (tiles), for the default steps per epoch


def decide_views(params: TrainParams, kind: str, train_files: Sequence[Path]) -> TrainViews:
    """``params.views`` resolved for a dataset (``auto``: :func:`services.training.views.choose_views` on what the
    train records declare), logged with the reason."""
    crop = params.train_size or params.input_size
    if kind != "detector" or params.views == "whole":
        why = "a classifier sees the whole image" if kind != "detector" else "asked for (views: whole)"
        decided = TrainViews("whole", why)
    else:
        sizes = scan_split(train_files)
        stats = size_stats(sizes, params.input_size)
        views: Views = "tiles"
        why = "asked for (views: tiles)"
        if params.views == "auto":
            views, why = choose_views(stats, params.input_size, crop)
        decided = (
            TrainViews("tiles", why, crop, stats.object_side_range, crops_per_pass(sizes, params.background_ratio))
            if views == "tiles"
            else TrainViews("whole", why)
        )
    log.info("run %s trains on views %s: %s", params.run, decided.views, decided.reason)
    return decided


def tiles_datasets(
    spec: ModelSpec,
    params: TrainParams,
    views: TrainViews,
    train_files: Sequence[Path],
    validation_files: Sequence[Path],
    *,
    seed: int,
) -> tuple[tf.data.Dataset, tf.data.Dataset | None]:
    """Training crops (endless) and validation crops (a fixed number of batches per epoch, unaugmented) for a
    ``tiles`` detector."""
    config = spec.config
    assert isinstance(config, DetectorConfig) and views.crop_size is not None
    common = {
        "crop_size": views.crop_size,
        "batch_size": params.batch_size,
        "stride": config.stride,
        "num_classes": config.num_classes,
        "background_ratio": params.background_ratio,
    }
    train = tiles_dataset(train_files, seed=seed, **common)  # type: ignore[arg-type]
    if not validation_files:
        return train, None
    batches = max(
        1, math.ceil(crops_per_pass(scan_split(validation_files), params.background_ratio) / params.batch_size)
    )
    validation = tiles_dataset(validation_files, seed=7919, augment_config=NO_AUGMENT, **common)  # type: ignore[arg-type]
    validation = validation.take(batches).apply(tf.data.experimental.assert_cardinality(batches))
    return train, validation
