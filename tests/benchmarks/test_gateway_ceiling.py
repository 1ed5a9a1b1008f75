"""The gateway-ceiling bench in ``--quick`` mode, and the instant upstream it runs against. Nothing here is about
speed: the rows must be there, hold numbers, and come from a gateway that really answered through the upstream.

The bench records the demo model's answers with the real embedded model server (TensorFlow in its own process),
then serves them from :mod:`benchmarks.instant_upstream`; this test process stays TensorFlow-free.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from benchmarks.gateway_ceiling import instant_upstream
from benchmarks.instant_upstream import Recording
from services.gateway.tensors import encode_predict_request, to_ndarray
from services.gen.tfs import get_model_status_pb2, model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc
from tests.benchmarks.running import run_bench
from tests.conftest import TEST_REDIS_DB

pytestmark = pytest.mark.integration

INPUTS = ("scene-320", "scene-320-png", "photo-720p", "photo-1080p")


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def run(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    work = tmp_path_factory.mktemp("gateway-ceiling")
    args = ["--quick", "--json", "--work-dir", str(work)]
    args += ["--worker-redis-url", f"redis://127.0.0.1:6379/{TEST_REDIS_DB}"]  # the idle worker: the tests' database
    done = run_bench(repo, "gateway_ceiling", *args, timeout=600)
    logs = "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in (work / "logs").glob("*.log"))
    assert done.returncode == 0, f"the bench failed:\n{done.stderr[-4000:]}\n{logs}"
    result: dict[str, Any] = json.loads(done.stdout)
    return result, work


def test_every_input_protocol_and_process_count_has_a_row(run: tuple[dict[str, Any], Path]) -> None:
    result, _ = run
    rows = {(r["input"], r["protocol"], r["workers"]) for r in result["rows"]}
    assert rows == {(i, p, w) for i in INPUTS for p in ("rest", "grpc") for w in (1, 2)}
    for row in result["rows"]:
        assert row["errors"] == {}, row
        assert row["images"] >= 1
        for key in ("images_per_second", "gateway_cpu_ms_per_image", "images_per_core_second", "ratio_to_floor"):
            assert _positive(row[key]), (key, row)
        assert len(row["loadavg"]) == 3
        # One RSS per gateway process: the process itself, or the supervisor and its two workers.
        assert len(row["gateway_rss_max_mb"]) == (1 if row["workers"] == 1 else 3)
        assert all(_positive(v) for v in row["gateway_rss_max_mb"].values())


def test_the_floor_and_memory_are_measured(run: tuple[dict[str, Any], Path]) -> None:
    result, _ = run
    assert set(result["floor_ms_per_image"]) == set(INPUTS)
    assert all(_positive(v) for v in result["floor_ms_per_image"].values())
    assert _positive(result["memory_mb"]["modelserver_idle"])
    assert _positive(result["memory_mb"]["worker_idle"])  # the test session has Redis


def test_camera_inputs_are_jpegs_of_their_size_with_exif(run: tuple[dict[str, Any], Path]) -> None:
    from PIL import Image

    result, _ = run
    for name, size in (("photo-720p", (1280, 720)), ("photo-1080p", (1920, 1080))):
        folder = Path(result["inputs"][name]["folder"])
        for path in folder.iterdir():
            with Image.open(path) as image:
                assert image.format == "JPEG" and image.size == size
                assert image.getexif().get(0x0112) == 1


@pytest.fixture(scope="module")
def upstream(run: tuple[dict[str, Any], Path]) -> Iterator[tuple[Recording, str]]:
    _, work = run
    recording = work / "recording.json"
    with instant_upstream(recording, work) as (_, target):
        yield Recording(json.loads(recording.read_text())), target


@pytest.mark.parametrize("batch", [1, 3, 16])
def test_the_instant_upstream_answers_recorded_rows_sized_to_the_batch(
    upstream: tuple[Recording, str], batch: int
) -> None:
    recording, target = upstream
    request = predict_pb2.PredictRequest()
    request.model_spec.name = recording.model
    request.model_spec.signature_name = "serving_default"
    images = np.zeros((batch, 320, 320, 3), np.uint8)
    with grpc.insecure_channel(target) as channel:
        predict: grpc.UnaryUnaryMultiCallable[bytes, predict_pb2.PredictResponse] = channel.unary_unary(
            "/tensorflow.serving.PredictionService/Predict",
            request_serializer=None,
            response_deserializer=predict_pb2.PredictResponse.FromString,
        )
        answer = predict(encode_predict_request(request, {"images": images}), timeout=10)
    recorded = recording.predict(1)
    for name in ("detection_boxes", "detection_scores", "detection_classes", "num_detections"):
        rows = to_ndarray(answer.outputs[name])
        assert rows.shape[0] == batch
        np.testing.assert_array_equal(rows[0], to_ndarray(recorded.outputs[name])[0])  # the real model's first row


def test_the_instant_upstream_says_not_found_for_other_models(upstream: tuple[Recording, str]) -> None:
    _, target = upstream
    with grpc.insecure_channel(target) as channel:
        models = model_service_pb2_grpc.ModelServiceStub(channel)  # type: ignore[no-untyped-call]
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "nope"
        with pytest.raises(grpc.RpcError) as raised:
            models.GetModelStatus(request, timeout=10)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as raised:
            predict.Predict(predict_pb2.PredictRequest(), timeout=10)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
