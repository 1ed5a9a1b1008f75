"""Warmup files in tests: a sampled canvas as the gateway stores it, and the requests of a version's warmup file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from services.training.export import WARMUP_FILE


def canvas_proto(value: int, size: int) -> bytes:
    """One sampled canvas as the gateway stores it: a serialized uint8 ``[size, size, 3]`` TensorProto."""
    return bytes(tf.make_tensor_proto(np.full((size, size, 3), value, np.uint8)).SerializeToString())


def records(version_dir: Path) -> list[Any]:
    """The ``PredictRequest`` of every record of the version's warmup file."""
    found = []
    for raw in tf.data.TFRecordDataset(str(version_dir / "assets.extra" / WARMUP_FILE)).as_numpy_iterator():
        found.append(prediction_log_pb2.PredictionLog.FromString(raw).predict_log.request)
    return found
