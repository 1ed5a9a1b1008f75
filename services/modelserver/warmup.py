"""Replay a version's warmup requests before it reports AVAILABLE, as TensorFlow Serving does.

``<version>/assets.extra/tf_serving_warmup_requests`` is a TFRecord file of ``PredictionLog`` records. Each predict
log's request is run ``num_request_iterations`` times (TFS's default: once) against the new version, so its first
real request doesn't pay for graph optimisation. A missing file is fine; a failing record fails the load, as in TFS.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import grpc
import tensorflow as tf
from google.protobuf import message
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from services.modelserver.metrics import METRICS
from services.modelserver.status import ServingError, code_from_number, invalid_argument

if TYPE_CHECKING:
    from services.modelserver.servable import Servable

log = logging.getLogger(__name__)

WARMUP_FILE = ("assets.extra", "tf_serving_warmup_requests")
MAX_RECORDS = 1000  # TFS's WarmupConsts::kMaxNumRecords


def run_warmup(servable: Servable, *, iterations: int = 1) -> int:
    """Replay the warmup records of ``servable``; returns how many records were read.

    Raises:
        ServingError: a record can't be parsed, isn't a predict log, or its request fails.
    """
    path = servable.path.joinpath(*WARMUP_FILE)
    if not path.is_file():
        log.info("No warmup data file found at %s", path)
        return 0
    start = time.perf_counter()
    records = 0
    status = "OK"
    try:
        try:
            for record in tf.data.TFRecordDataset(str(path)):
                records += 1
                if records > MAX_RECORDS:
                    raise invalid_argument(f"Number of warmup records exceeds the maximum ({MAX_RECORDS}) at {path}")
                _replay(servable, record.numpy(), path, iterations)
        except tf.errors.OpError as exc:
            suffix = (
                ". Please verify your warmup data is in TFRecord format."
                if exc.error_code == tf.errors.DATA_LOSS
                else ""
            )
            raise ServingError(code_from_number(exc.error_code), f"{exc.message}{suffix}") from exc
    except ServingError as exc:
        status = f"{exc.code.name}: {exc.message}"
        raise
    finally:
        elapsed_us = (time.perf_counter() - start) * 1e6
        METRICS.model_warmup_latency.observe(str(servable.path), status, value=elapsed_us)
    log.info(
        "Finished reading warmup data for model at %s. Number of warmup records read: %d. "
        "Elapsed time (microseconds): %d.",
        path,
        records,
        elapsed_us,
    )
    return records


def _replay(servable: Servable, record: bytes, path: object, iterations: int) -> None:
    prediction_log = prediction_log_pb2.PredictionLog()
    try:
        prediction_log.ParseFromString(record)
    except message.DecodeError as exc:
        raise invalid_argument(f"Failed to parse warmup record from {path}") from exc
    kind = prediction_log.WhichOneof("log_type")
    if kind != "predict_log":
        # TFS also replays classify, regress, multi_inference and session_run logs; this server only has Predict.
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"Unsupported log_type for warmup: {kind}")
    for _ in range(iterations):
        servable.predict(prediction_log.predict_log.request, predict_pb2.PredictResponse())
