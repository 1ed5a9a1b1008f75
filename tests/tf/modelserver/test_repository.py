"""Versions appear and disappear while the server runs; failed loads end with their error and are not retried."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.support.modelserver import ModelServerHandle
from tests.tf.modelserver.conftest import SIZE, copy_version

pytestmark = pytest.mark.integration


def predict(stub: prediction_service_pb2_grpc.PredictionServiceStub, version: int | None = None) -> int:
    """Predict on ``dyn``; returns the version that answered."""
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "dyn"
    if version is not None:
        req.model_spec.version.value = version
    req.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros((1, SIZE, SIZE, 3), np.uint8)))
    return int(stub.Predict(req, timeout=10).model_spec.version.value)


def test_a_new_version_is_served_by_default_then_a_removed_one_goes_away(
    server: ModelServerHandle, model_root: Path, prediction: prediction_service_pb2_grpc.PredictionServiceStub
) -> None:
    assert predict(prediction) == 1

    copy_version(model_root / "tiny" / "1", model_root / "dyn" / "2")
    started = time.monotonic()
    server.wait_available("dyn", 2, timeout=10)
    assert time.monotonic() - started < 10
    assert predict(prediction) == 2
    assert predict(prediction, 1) == 1  # the previous version stays loaded for rollback (latest 2)

    shutil.rmtree(model_root / "dyn" / "2")
    server.wait_state("dyn", 2, "END", timeout=10)
    assert predict(prediction) == 1
    with pytest.raises(grpc.RpcError) as info:
        predict(prediction, 2)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert {(s["version"], s["state"]) for s in server.status("dyn")} == {("2", "END"), ("1", "AVAILABLE")}


def test_a_failed_version_is_not_retried_in_a_loop(server: ModelServerHandle) -> None:
    time.sleep(1.0)  # a few poll intervals (0.3 s)
    messages = [json.loads(line)["message"] for line in server.server.log().splitlines() if line.startswith("{")]
    assert messages.count("Loading servable version {name: broken version: 1}") == 1
    (status,) = server.status("broken")
    assert status["state"] == "END"
    assert status["status"]["error_code"] == "DATA_LOSS"
    assert "saved_model.pb" in status["status"]["error_message"]


def test_a_failing_warmup_fails_the_load(server: ModelServerHandle) -> None:
    (status,) = server.status("badwarm")
    assert status["state"] == "END"
    assert status["status"]["error_code"] == "DATA_LOSS"
    assert "Please verify your warmup data is in TFRecord format" in status["status"]["error_message"]
