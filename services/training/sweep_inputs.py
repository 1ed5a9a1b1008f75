"""What a sweep feeds the exports it measures: the sweep's own split, decoded and letterboxed to each row's input size
as the gateway would (``decode_image`` then ``letterbox``), so the figure is the speed on the user's images.

A network's cost hardly depends on its pixels, but a detector's does a little (its decoding and NMS work on what it
finds), and real images make that part honest. Random pixels stand in only when the split has no images at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import numpy as np

from services.store.datasets.storage import DatasetStore
from services.training.datasets import features
from services.training.datasets.tfrecord import iter_records
from services.training.throughput import Canvases, random_canvases
from services.vision.images import DecodedImage, decode_image
from services.vision.letterbox import letterbox

_LIMIT = 1 << 30
"""The split's images passed the import's checks already: no size limit here."""


def _encoded(version_dir: Path, record_files: list[str]) -> Iterator[bytes]:
    """Each record's encoded image, shard after shard."""
    from tensorflow.core.example import example_pb2

    for name in record_files:
        for raw in iter_records(version_dir / name):
            example = example_pb2.Example.FromString(raw)
            values = example.features.feature[features.ENCODED].bytes_list.value
            if values:
                yield bytes(values[0])


def split_images(data_dir: Path, dataset: str, version: int | None, split: str, count: int) -> list[DecodedImage]:
    """Up to ``count`` images of the dataset version's ``split``, decoded (first shards first)."""
    store = DatasetStore(data_dir)
    folder = store.path(dataset, version)
    files = store.manifest(dataset, version).record_files(split)
    return [
        decode_image(data, content_type=None, max_bytes=_LIMIT, max_pixels=_LIMIT)
        for data in islice(_encoded(folder, files), count)
    ]


def image_canvases(images: list[DecodedImage]) -> Canvases:
    """A batch is the images in turn (repeated when the batch is larger than the list), letterboxed to the size."""
    cache: dict[int, list[np.ndarray]] = {}

    def canvases(batch: int, size: int) -> np.ndarray:
        boxed = cache.get(size)
        if boxed is None:
            boxed = cache[size] = [letterbox(image, size)[0] for image in images]
        return np.stack([boxed[i % len(boxed)] for i in range(batch)])

    return canvases


def sweep_canvases(data_dir: Path, dataset: str, version: int | None, split: str, count: int) -> tuple[Canvases, str]:
    """``(the canvases, where they come from)``: the split's images (``"<split> images"``), or random pixels
    (``"random pixels"``) when the split is empty."""
    images = split_images(data_dir, dataset, version, split, count)
    if images:
        return image_canvases(images), f"{split} images"
    return random_canvases(), "random pixels"
