"""Warmup is replayed before a version is AVAILABLE; metrics are exposed under TFS's names and move."""

from __future__ import annotations

import json
import re
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.support.modelserver import ModelServerHandle
from tests.tf.modelserver.conftest import SIZE

pytestmark = pytest.mark.integration

Stub = prediction_service_pb2_grpc.PredictionServiceStub
_SAMPLE = re.compile(r"^(?P<name>[^{\s]+)\{(?P<labels>[^}]*)\} (?P<value>\S+)$")


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """``{(name, labels): value}`` from a Prometheus text exposition."""
    found = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match["labels"]))
            found[(match["name"], labels)] = float(match["value"])
    return found


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


def test_warmup_ran_before_the_version_was_available(
    server: ModelServerHandle, model_root: Path, prediction: Stub
) -> None:
    # The model counts its serving_default calls; nothing but warmup can have called it before it was AVAILABLE.
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "warm"
    req.model_spec.signature_name = "calls"
    assert tf.make_ndarray(prediction.Predict(req, timeout=10).outputs["count"]).tolist() == [3]

    messages = [json.loads(line)["message"] for line in server.server.log().splitlines() if line.startswith("{")]
    warm_path = model_root / "warm" / "1" / "assets.extra" / "tf_serving_warmup_requests"
    finished = next(
        i for i, m in enumerate(messages) if m.startswith(f"Finished reading warmup data for model at {warm_path}.")
    )
    assert "Number of warmup records read: 3." in messages[finished]
    available = messages.index("Successfully loaded servable version {name: warm version: 1}")
    assert finished < available

    text = server.metrics()
    assert (
        value(
            text,
            ":tensorflow:serving:model_warmup_latency_count",
            model_path=str(model_root / "warm" / "1"),
            status="OK",
        )
        == 1
    )
    assert (
        value(text, ":tensorflow:serving:runtime_latency_count", model_name="warm", API="Predict", runtime="TF1") >= 3
    )


def test_metrics_use_tfs_s_names_and_types(server: ModelServerHandle) -> None:
    text = server.metrics()
    assert "# TYPE :tensorflow:serving:request_count counter" in text
    assert "# TYPE :tensorflow:serving:request_latency histogram" in text
    assert "# TYPE :tensorflow:serving:runtime_latency histogram" in text
    assert "# TYPE :tensorflow:cc:saved_model:load_attempt_count counter" in text
    assert "_total" not in text
    assert "_created" not in text


def test_load_attempts_are_counted(server: ModelServerHandle, model_root: Path) -> None:
    text = server.metrics()
    load = ":tensorflow:cc:saved_model:load_attempt_count"
    assert value(text, load, model_path=str(model_root / "tiny" / "1"), status="success") == 1
    assert value(text, load, model_path=str(model_root / "broken" / "1"), status="fail") == 1
    assert value(text, ":tensorflow:cc:saved_model:load_latency", model_path=str(model_root / "tiny" / "1")) > 0


def test_request_metrics_move(server: ModelServerHandle, prediction: Stub) -> None:
    before = server.metrics()
    good = predict_pb2.PredictRequest()
    good.model_spec.name = "tiny"
    good.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros((1, SIZE, SIZE, 3), np.uint8)))
    bad = predict_pb2.PredictRequest()
    bad.model_spec.name = "tiny"
    unknown = predict_pb2.PredictRequest()
    unknown.model_spec.name = "no-such-model"
    prediction.Predict(good, timeout=10)
    prediction.Predict(good, timeout=10)
    for req in (bad, unknown):
        with pytest.raises(grpc.RpcError):
            prediction.Predict(req, timeout=10)
    after = server.metrics()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    count = ":tensorflow:serving:request_count"
    assert delta(count, model_name="tiny", status="OK") == 2
    assert delta(count, model_name="tiny", status="INVALID_ARGUMENT") == 1
    # Names the server doesn't know are counted under one label value, so clients can't blow up the series count.
    assert delta(count, model_name="unknown", status="NOT_FOUND") == 1
    assert "no-such-model" not in after
    latency = ":tensorflow:serving:request_latency"
    assert delta(f"{latency}_count", model_name="tiny", API="Predict", entrypoint="GRPC") == 2
    assert delta(f"{latency}_sum", model_name="tiny", API="Predict", entrypoint="GRPC") > 0
    assert delta(f"{latency}_bucket", model_name="tiny", API="Predict", entrypoint="GRPC", le="+Inf") == 2
    runtime = ":tensorflow:serving:runtime_latency_count"
    assert delta(runtime, model_name="tiny", API="Predict", runtime="TF1") == 2
