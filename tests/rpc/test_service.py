"""``spotter.v1.DetectionService`` over a real channel to the gateway: the same answers as REST, selectors and
parameter presence, models, annotate, request ids and metrics."""

from __future__ import annotations

import io

import grpc
import httpx
import pytest
from PIL import Image

from services import errors
from services.client.rpc import DetectionClient
from services.gen.spotter.v1 import detection_pb2, detection_pb2_grpc, model_pb2
from tests.gateway.helpers import RunningGateway, solid
from tests.rpc.helpers import as_rest, metric_value, rest_detect
from tests.support.tiny_models import LABELS

pytestmark = pytest.mark.integration


def test_detect_answers_exactly_what_rest_answers(client: DetectionClient, gateway: RunningGateway) -> None:
    image = solid(48, 32, value=200)
    for query, params in [
        ("min_score=0&tile=off", {"min_score": 0.0, "tile": "off"}),
        ("min_score=0.4", {"min_score": 0.4}),
        ("min_score=0&max_detections=2", {"min_score": 0.0, "max_detections": 2}),
        ("min_score=0&tile=on&max_detections=1000", {"min_score": 0.0, "tile": "on", "max_detections": 1000}),
    ]:
        answer = client.detect(image, model="tiny", **params)  # type: ignore[arg-type]
        assert as_rest(answer) == rest_detect(gateway, "tiny", image, query), query
    answer = client.detect(solid(32, 32), model="tiny", min_score=0.0)
    assert (answer.model, answer.version, answer.width, answer.height) == ("tiny", 1, 32, 32)
    assert [d.label for d in answer.detections] == list(LABELS)
    assert [d.score for d in answer.detections] == pytest.approx([1.0, 0.5, 1 / 3], abs=1e-5)
    assert answer.detections[0].box.xmax == pytest.approx(16.0, abs=1e-3)


def test_an_explicit_zero_is_not_an_unset_parameter(client: DetectionClient) -> None:
    # min_score=0 asks for everything; unset takes the gateway's default (0.5), which drops the weakest box.
    assert len(client.detect(solid(32, 32), model="tiny", min_score=0.0).detections) == 3
    assert len(client.detect(solid(32, 32), model="tiny").detections) < 3


def test_a_version_or_a_label_selects_what_serves(client: DetectionClient) -> None:
    assert client.detect(solid(8, 8), model="tiny", version=1).version == 1
    assert client.detect(solid(8, 8), model="tiny", label="stable").version == 1
    with pytest.raises(errors.ModelNotFound):
        client.detect(solid(8, 8), model="tiny", version=9)
    with pytest.raises(errors.ModelNotFound):
        client.detect(solid(8, 8), model="tiny", label="nope")


def test_classify_answers_what_rest_answers(client: DetectionClient, gateway: RunningGateway) -> None:
    answer = client.classify(solid(8, 8), model="cls", top_k=2)
    rest = httpx.post(
        f"{gateway.url}/v1/models/cls:classify?top_k=2", content=solid(8, 8), headers={"Content-Type": "image/png"}
    ).json()
    assert (answer.model, answer.version) == ("cls", 1)
    got = [{"label": p.label, "class_id": p.class_id, "score": p.score} for p in answer.predictions]
    assert got == rest["predictions"]
    assert [p.label for p in answer.predictions] == ["class3", "class2"]


def test_models_are_described_as_rest_describes_them(client: DetectionClient, gateway: RunningGateway) -> None:
    tiny = client.get_model("tiny")
    assert tiny.name == "tiny"
    assert dict(tiny.version_labels) == {"stable": 1}
    [version] = [v for v in tiny.versions if v.version == 1]
    assert version.state == model_pb2.VERSION_STATE_AVAILABLE
    assert version.kind == model_pb2.MODEL_KIND_DETECTOR
    assert version.HasField("input_size") and version.input_size == 16
    assert [(label.id, label.name) for label in version.labels] == [(1, "circle"), (2, "square"), (3, "triangle")]
    rest = httpx.get(f"{gateway.url}/v1/models/tiny").json()
    assert [v["version"] for v in rest["versions"]] == [v.version for v in tiny.versions]

    listed = {m.name: m for m in client.list_models()}
    assert {"tiny", "cls", "odapi"} <= set(listed)
    assert listed["cls"].versions[0].kind == model_pb2.MODEL_KIND_CLASSIFIER
    for body in httpx.get(f"{gateway.url}/v1/models").json()["models"]:
        model = listed.pop(body["name"])
        assert dict(model.version_labels) == body["version_labels"]
        for version, want in zip(model.versions, body["versions"], strict=True):
            assert model_pb2.VersionState.Name(version.state) == f"VERSION_STATE_{want['state']}"
            assert version.input_size == (want["input_size"] or 0)
            assert [{"id": x.id, "name": x.name} for x in version.labels] == (want["labels"] or [])
    assert not listed  # no model that REST does not list
    with pytest.raises(errors.ModelNotFound, match="no-such-model"):
        client.get_model("no-such-model")


@pytest.mark.parametrize(("media_type", "magic"), [("image/png", b"\x89PNG"), ("", b"\xff\xd8")])
def test_annotate_answers_the_drawn_image(client: DetectionClient, media_type: str, magic: bytes) -> None:
    answer = client.annotate(solid(40, 24), model="tiny", media_type=media_type, min_score=0.0, tile="off")
    assert answer.image.data.startswith(magic)
    assert answer.image.content_type == (media_type or "image/jpeg")
    assert Image.open(io.BytesIO(answer.image.data)).size == (40, 24)
    assert (answer.result.version, len(answer.result.detections)) == (1, 3)
    with pytest.raises(errors.NotAcceptable, match="image/png"):
        client.annotate(solid(8, 8), model="tiny", media_type="image/gif")


def test_the_request_id_is_taken_or_made_and_returned(channel: grpc.Channel) -> None:
    stub = detection_pb2_grpc.DetectionServiceStub(channel)  # type: ignore[no-untyped-call]
    request = detection_pb2.DetectRequest(model="tiny", image=detection_pb2.Image(data=solid(8, 8)))
    _, call = stub.Detect.with_call(request, metadata=[("x-request-id", "trace-42.a")], timeout=30)
    assert dict(call.initial_metadata())["x-request-id"] == "trace-42.a"
    _, call = stub.Detect.with_call(request, metadata=[("x-request-id", "not a sane id!")], timeout=30)
    made = dict(call.initial_metadata())["x-request-id"]
    assert made != "not a sane id!" and len(made) == 32
    # Errors carry it too (initial metadata is sent before the work starts).
    with pytest.raises(grpc.RpcError) as failed:
        stub.Detect(detection_pb2.DetectRequest(model="tiny"), metadata=[("x-request-id", "bad-1")], timeout=30)
    assert dict(failed.value.initial_metadata())["x-request-id"] == "bad-1"  # type: ignore[attr-defined]


def test_requests_are_counted_like_rest_requests(client: DetectionClient, gateway: RunningGateway) -> None:
    ok = {"endpoint": "grpc_detect", "model": "tiny", "version": "1", "status": "200"}
    missing = {"endpoint": "grpc_detect", "model": "unknown", "version": "", "status": "404"}
    before = metric_value(gateway, "spotter_request_duration_seconds_count", **ok)
    before_missing = metric_value(gateway, "spotter_request_duration_seconds_count", **missing)
    before_rejected = metric_value(
        gateway, "spotter_rejected_requests_total", model="unknown", reason="model_not_found"
    )
    client.detect(solid(8, 8), model="tiny")
    with pytest.raises(errors.ModelNotFound):
        client.detect(solid(8, 8), model="made-up-name")
    assert metric_value(gateway, "spotter_request_duration_seconds_count", **ok) == before + 1
    assert metric_value(gateway, "spotter_request_duration_seconds_count", **missing) == before_missing + 1
    rejected = metric_value(gateway, "spotter_rejected_requests_total", model="unknown", reason="model_not_found")
    assert rejected == before_rejected + 1
    client.classify(solid(8, 8), model="cls")
    assert metric_value(gateway, "spotter_request_duration_seconds_count", endpoint="grpc_classify", status="200")
    assert 'endpoint="grpc_detect"' in httpx.get(f"{gateway.url}/metrics").text
