"""The input pipelines: generated scenes in memory, and TF OD API TFRecords written here."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from services.training.inputs import MAX_OBJECTS, parse_example, scene_arrays, synthetic_dataset, tfrecord_dataset


def test_scene_arrays_hold_normalised_boxes() -> None:
    arrays = scene_arrays(5, 3, width=96, height=96, object_size=(14, 20))
    assert arrays.images.shape == (3, 96, 96, 3) and arrays.images.dtype == np.uint8
    assert arrays.boxes.shape == (3, MAX_OBJECTS, 4)
    real = arrays.classes > 0
    assert real.any()
    assert (arrays.boxes[real] >= 0).all() and (arrays.boxes[real] <= 1).all()
    assert not arrays.boxes[~real].any()


def test_synthetic_training_stream_is_endless_cropped_and_seeded() -> None:
    arrays = scene_arrays(5, 4, width=128, height=128, object_size=(14, 20))

    def take(seed: int) -> list[np.ndarray]:
        ds = synthetic_dataset(arrays, batch_size=3, stride=4, num_classes=4, seed=seed, train_size=96)
        return [x.numpy() for x, _ in ds.take(3)]  # 9 examples from 4 scenes: it wraps around

    first = take(1)
    assert first[0].shape == (3, 96, 96, 3)
    for a, b in zip(first, take(1), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], take(2)[0])


def test_synthetic_validation_is_one_pass_unaugmented() -> None:
    arrays = scene_arrays(5, 5, width=96, height=96)
    batches = list(synthetic_dataset(arrays, batch_size=2, stride=4, num_classes=4))
    assert [int(x.shape[0]) for x, _ in batches] == [2, 2, 1]
    np.testing.assert_array_equal(batches[0][0].numpy()[0], arrays.images[0].astype(np.float32))
    assert batches[0][1].shape == (2, 24, 24, 4 + 5)


def _feature(values: list, kind: str) -> tf.train.Feature:  # type: ignore[type-arg]
    if kind == "bytes":
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
    if kind == "int":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def _write_record(path: Path, width: int, height: int, boxes_px: list[tuple[int, int, int, int]]) -> np.ndarray:
    """An OD API example of a non-square PNG with white rectangles at ``boxes_px`` (x0, y0, x1, y1)."""
    image = np.full((height, width, 3), 30, np.uint8)
    for x0, y0, x1, y1 in boxes_px:
        image[y0:y1, x0:x1] = 255
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    feature = {
        "image/encoded": _feature([buffer.getvalue()], "bytes"),
        "image/format": _feature([b"png"], "bytes"),
        "image/height": _feature([height], "int"),
        "image/width": _feature([width], "int"),
        "image/object/bbox/xmin": _feature([b[0] / width for b in boxes_px], "float"),
        "image/object/bbox/ymin": _feature([b[1] / height for b in boxes_px], "float"),
        "image/object/bbox/xmax": _feature([b[2] / width for b in boxes_px], "float"),
        "image/object/bbox/ymax": _feature([b[3] / height for b in boxes_px], "float"),
        "image/object/class/label": _feature([1, 2][: len(boxes_px)], "int"),
        "image/object/class/text": _feature([b"circle", b"square"][: len(boxes_px)], "bytes"),
    }
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return image


def test_tfrecord_example_is_parsed_and_letterboxed(tmp_path: Path) -> None:
    path = tmp_path / "train-00000-of-00001.tfrecord"
    _write_record(path, 200, 100, [(20, 10, 60, 50), (120, 40, 180, 90)])
    record = next(iter(tf.data.TFRecordDataset(str(path))))
    example = parse_example(record, size=128)
    canvas = example["image"].numpy()
    assert canvas.shape == (128, 128, 3)
    assert int(example["height"]) == 100 and int(example["width"]) == 200
    assert example["classes"].numpy()[:3].tolist() == [1, 2, 0]
    # scale = 128 / 200 = 0.64: the image fills rows 0..64 of the canvas, the rest is zeros.
    assert not canvas[64:].any()
    boxes = example["boxes"].numpy()
    np.testing.assert_allclose(
        boxes[0], [10 * 0.64 / 128, 20 * 0.64 / 128, 50 * 0.64 / 128, 60 * 0.64 / 128], atol=1e-6
    )
    # The box covers the white pixels on the canvas (within a resampling pixel).
    y0, x0, y1, x1 = (boxes[1] * 128).round().astype(int)
    assert canvas[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1].min() > 200


def test_tfrecord_dataset_trains_and_validates(tmp_path: Path) -> None:
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"shard-{i}.tfrecord")
        _write_record(paths[-1], 160 + 40 * i, 120, [(20, 30, 50, 60)])
    train = tfrecord_dataset(paths, size=128, batch_size=4, stride=4, num_classes=2, seed=3, train_size=96)
    x, y = next(iter(train))  # 4 examples from 2 records: endless
    assert x.shape == (4, 96, 96, 3) and y.shape == (4, 24, 24, 2 + 5)
    val = list(tfrecord_dataset(paths, size=128, batch_size=4, stride=4, num_classes=2))
    assert len(val) == 1 and val[0][0].shape == (2, 128, 128, 3)
    # One object each, at its centre cell, of class 1.
    targets = val[0][1].numpy()
    assert targets[..., 6].sum() == 2
    assert targets[..., 0].max() == 1.0 and targets[..., 1].max() == 0.0
