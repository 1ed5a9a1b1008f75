"""Replay a version's warmup requests before it reports AVAILABLE, as TensorFlow Serving does.

``<version>/assets.extra/tf_serving_warmup_requests`` is a TFRecord file of ``PredictionLog`` records. Each log's
request (predict, classify, regress or multi_inference) is run ``num_request_iterations`` times (TFS's default:
once) against the new version, so its first real request doesn't pay for graph optimisation. A missing file is
fine; a failing record fails the load, as in TFS. So loading a version (:func:`load_servable`) is restoring it, then
warming it up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import tensorflow as tf
from google.protobuf import message
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from services.modelserver import inference
from services.modelserver.batching import BatchingParameters
from services.modelserver.metrics import METRICS
from services.modelserver.servable import Servable, restore_servable
from services.modelserver.status import ServingError, code_from_number, invalid_argument

log = logging.getLogger(__name__)

WARMUP_FILE = ("assets.extra", "tf_serving_warmup_requests")
MAX_RECORDS = 1000  # TFS's WarmupConsts::kMaxNumRecords


def load_servable(
    name: str,
    version: int,
    path: Path,
    *,
    warmup_iterations: int = 1,
    strict_tfs_loading: bool = True,
    batching: tuple[BatchingParameters, threading.Semaphore] | None = None,
) -> Servable:
    """Load one version (TF2 or TF1 SavedModel) and replay its warmup requests; raises ServingError on failure.

    See :func:`services.modelserver.servable.restore_servable` for ``strict_tfs_loading`` and ``batching`` (warmup
    runs are batched too, as in TFS).
    """
    servable = restore_servable(name, version, path, strict_tfs_loading=strict_tfs_loading, batching=batching)
    run_warmup(servable, iterations=warmup_iterations)
    return servable


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
    runs: dict[str | None, Callable[[], object]] = {
        "predict_log": lambda: servable.predict(prediction_log.predict_log.request, predict_pb2.PredictResponse()),
        "classify_log": lambda: inference.classify(servable, prediction_log.classify_log.request),
        "regress_log": lambda: inference.regress(servable, prediction_log.regress_log.request),
        "multi_inference_log": lambda: inference.multi_inference(servable, prediction_log.multi_inference_log.request),
    }
    run = runs.get(kind)
    if run is None:
        # TFS also replays session_run logs, of its SessionService, which no client of this server has.
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"Unsupported log_type for warmup: {kind}")
    for _ in range(iterations):
        run()
