"""The one interceptor: every bad input's status and message, API keys, message size, and bugs as INTERNAL."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services import errors
from services.client.rpc import DetectionClient, error_from_rpc
from services.gen.spotter.v1 import detection_pb2, detection_pb2_grpc
from tests.gateway.helpers import RunningGateway, png_bomb, running_gateway, solid
from tests.rpc.helpers import failure, grpc_target, rpc_settings
from tests.support.modelserver import ModelServerHandle

pytestmark = pytest.mark.integration

KEYS = ("first-key", "second-key")
MESSAGE_LIMIT = 256 * 1024


def raw_detect(channel: grpc.Channel, **fields: Any) -> Callable[[], Any]:
    """A Detect call with fields the typed client would refuse to build (an unknown enum number...)."""
    stub = detection_pb2_grpc.DetectionServiceStub(channel)  # type: ignore[no-untyped-call]
    request = detection_pb2.DetectRequest(model="tiny", image=detection_pb2.Image(data=solid(8, 8)), **fields)

    def call() -> Any:
        try:
            return stub.Detect(request, timeout=30)
        except grpc.RpcError as err:
            raise error_from_rpc(err) from err

    return call


@pytest.mark.parametrize(
    ("kwargs", "status", "cls", "says"),
    [
        ({"image": b""}, "INVALID_ARGUMENT", errors.InvalidInput, "empty"),
        ({"image": b"hello, this is not an image"}, "INVALID_ARGUMENT", errors.InvalidInput, "image"),
        ({"content_type": "text/plain"}, "INVALID_ARGUMENT", errors.UnsupportedMediaType, "text/plain"),
        ({"image": png_bomb()}, "RESOURCE_EXHAUSTED", errors.PayloadTooLarge, "pixels"),
        ({"model": "no-such-model"}, "NOT_FOUND", errors.ModelNotFound, "no-such-model"),
        ({"version": 9}, "NOT_FOUND", errors.ModelNotFound, "version 9"),
        ({"version": 0}, "INVALID_ARGUMENT", errors.InvalidParameter, "version must be at least 1"),
        ({"label": ""}, "INVALID_ARGUMENT", errors.InvalidParameter, "label must not be empty"),
        ({"model": ""}, "INVALID_ARGUMENT", errors.InvalidParameter, "model name"),
        ({"min_score": 1.5}, "INVALID_ARGUMENT", errors.InvalidParameter, "min_score must be within [0, 1]"),
        ({"min_score": -0.1}, "INVALID_ARGUMENT", errors.InvalidParameter, "min_score"),
        ({"max_detections": 0}, "INVALID_ARGUMENT", errors.InvalidParameter, "max_detections must be within"),
        ({"max_detections": 1001}, "INVALID_ARGUMENT", errors.InvalidParameter, "[1, 1000]"),
    ],
    ids=[
        "empty",
        "not-an-image",
        "text-plain",
        "pixel-bomb",
        "unknown-model",
        "unknown-version",
        "version-zero",
        "empty-label",
        "no-model-name",
        "min-score-high",
        "min-score-negative",
        "max-detections-zero",
        "max-detections-high",
    ],
)
def test_bad_input_gets_its_status_and_a_message_saying_what_to_fix(
    client: DetectionClient, kwargs: dict[str, Any], status: str, cls: type[errors.SpotterError], says: str
) -> None:
    params: dict[str, Any] = {"model": "tiny", "image": solid(8, 8), "content_type": "image/png", **kwargs}
    code, error, trailers = failure(lambda: client.detect(**params))
    assert code.name == status
    assert type(error) is cls
    assert says in error.message
    assert trailers["spotter-error-code"] == cls.code


def test_an_unknown_tile_enum_value_is_named_in_the_answer(channel: grpc.Channel) -> None:
    code, error, _ = failure(raw_detect(channel, tile=7))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert isinstance(error, errors.InvalidParameter)
    assert "not 7" in error.message and "TILE_MODE_OFF" in error.message
    assert error.details["tile"] == 7


def test_classify_checks_its_parameters_and_the_model_kind(client: DetectionClient) -> None:
    code, error, _ = failure(lambda: client.classify(solid(8, 8), model="cls", top_k=0))
    assert (code, type(error)) == (grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidParameter)
    code, error, _ = failure(lambda: client.classify(solid(8, 8), model="tiny"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "detect" in error.message  # says which method fits the model


def test_a_bug_is_internal_with_a_log_line_and_no_details(
    client: DetectionClient, gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken() -> None:
        raise RuntimeError("a bug in the gateway")

    monkeypatch.setattr(gateway.app.state.dataplane, "list_models", broken)
    with caplog.at_level(logging.ERROR, logger="services.gateway.rpc.interceptors"):
        code, error, trailers = failure(client.list_models)
    assert code == grpc.StatusCode.INTERNAL
    assert "a bug" not in error.message and "log" in error.message
    assert trailers["spotter-error-code"] == "internal"
    [record] = [r for r in caplog.records if "grpc_list_models" in r.getMessage()]
    assert record.exc_info is not None and "a bug in the gateway" in str(record.exc_info[1])


@pytest.fixture(scope="module")
def locked(model_server: ModelServerHandle, tiny_models: Path) -> Iterator[RunningGateway]:
    """A gateway whose inference needs a key, with a small message limit."""
    settings = rpc_settings(
        model_server,
        tiny_models,
        api_keys=list(KEYS),
        inference_requires_key=True,
        grpc_max_message_bytes=MESSAGE_LIMIT,
    )
    with running_gateway(settings) as running:
        yield running


def test_inference_needs_a_valid_key_when_configured(locked: RunningGateway) -> None:
    target = grpc_target(locked)
    with DetectionClient(target) as anonymous:
        code, error, _ = failure(lambda: anonymous.detect(solid(8, 8), model="tiny"))
        assert (code, type(error)) == (grpc.StatusCode.UNAUTHENTICATED, errors.Unauthenticated)
        assert "x-api-key" in error.message.lower()
        assert failure(anonymous.list_models)[0] == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(errors.Unauthenticated):
            list(anonymous.detect_stream([solid(8, 8)], model="tiny"))
    with DetectionClient(target, api_key="wrong") as wrong:
        code, error, _ = failure(lambda: wrong.detect(solid(8, 8), model="tiny"))
        assert (code, type(error)) == (grpc.StatusCode.PERMISSION_DENIED, errors.PermissionDenied)
    with DetectionClient(target, api_key=KEYS[1]) as keyed:
        assert keyed.detect(solid(8, 8), model="tiny").version == 1
        assert [frame.unwrap().version for frame in keyed.detect_stream([solid(8, 8)], model="tiny")] == [1]
    with grpc.insecure_channel(target) as channel:
        stub = detection_pb2_grpc.DetectionServiceStub(channel)  # type: ignore[no-untyped-call]
        bearer = [("authorization", f"Bearer {KEYS[0]}")]
        request = detection_pb2.DetectRequest(model="tiny", image=detection_pb2.Image(data=solid(8, 8)))
        assert stub.Detect(request, metadata=bearer, timeout=30).version == 1
        # Health checking needs no key: load balancers have none.
        health = health_pb2_grpc.HealthStub(channel)
        checked = health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert checked.status == health_pb2.HealthCheckResponse.SERVING


def test_a_message_over_the_limit_is_refused(locked: RunningGateway) -> None:
    with DetectionClient(grpc_target(locked), api_key=KEYS[0]) as keyed:
        code, error, _ = failure(lambda: keyed.detect(b"\xff" * (MESSAGE_LIMIT + 1), model="tiny"))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert isinstance(error, errors.PayloadTooLarge)
