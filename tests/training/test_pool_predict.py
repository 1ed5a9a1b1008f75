"""Active learning's predictor through the gateway, against a stand-in gateway (httpx's mock transport under the
project's real REST client): what it sends, what it retries, and how each failure ends the job. Against the real
gateway and worker it runs in tests/jobs/test_active_learning_gateway.py."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterator

import httpx
import pytest
from PIL import Image

from services import errors
from services.jobs.params import ActiveLearningParams
from services.store.datasets.validate import ValidImage, valid_image_from_bytes
from services.training import pool_predict
from services.training.pool_predict import GatewayPredictor
from services.vision.results import Box, Detection, DetectResult

Handler = Callable[[httpx.Request], httpx.Response]
ANSWER = DetectResult("wally", 2, 2000, 1414, [Detection("señor café", 3, 0.875, Box(1021.5, 88.25, 1100.0, 190.75))])


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool_predict, "TRY_INTERVAL_S", 0.0)


@pytest.fixture
def image() -> ValidImage:
    out = io.BytesIO()
    Image.new("RGB", (200, 141), (90, 140, 30)).save(out, format="PNG")
    return valid_image_from_bytes("pool/poster-0007.png", out.getvalue())


def served(version: int) -> httpx.Response:
    return httpx.Response(200, json={"name": "wally", "versions": [{"version": version, "state": "AVAILABLE"}]})


def ok() -> httpx.Response:
    return httpx.Response(200, content=ANSWER.to_json(), headers={"Content-Type": "application/json"})


def error(status: int, code: str, message: str) -> httpx.Response:
    headers = {"Retry-After": "1"} if status == 503 else {}
    return httpx.Response(status, json={"error": {"code": code, "message": message}}, headers=headers)


def predictor(answers: Iterator[httpx.Response] | Handler, seen: list[httpx.Request]) -> GatewayPredictor:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "GET":
            return served(2)
        return answers(request) if callable(answers) else next(answers)

    params = ActiveLearningParams(
        model="wally", dataset="wally", pool="pool", predict_via="gateway", predict_batch=2, candidate_score=0.3
    )
    return GatewayPredictor("http://gateway.test", "key-1", params, transport=httpx.MockTransport(handle))


def detects(seen: list[httpx.Request]) -> list[httpx.Request]:
    return [r for r in seen if r.method == "POST"]


def test_each_image_is_sent_pinned_to_the_version_and_its_answer_read(image: ValidImage) -> None:
    seen: list[httpx.Request] = []
    with_answer = predictor(lambda _: ok(), seen)
    assert with_answer([image, image], 2) == [ANSWER.detections, ANSWER.detections]
    with_answer.close()
    sent = detects(seen)
    assert len(sent) == 2
    assert sent[0].url.path == "/v1/models/wally:detect"
    assert dict(sent[0].url.params) == {"version": "2", "min_score": "0.3"}
    assert sent[0].headers["Content-Type"] == "image/png" and sent[0].headers["X-API-Key"] == "key-1"
    assert sent[0].content == image.encoded()


def test_a_full_queue_is_waited_out(image: ValidImage) -> None:
    seen: list[httpx.Request] = []
    answers = iter([error(503, "overloaded", "queue full"), error(503, "unavailable", "loading"), ok()])
    assert predictor(answers, seen)([image], 2) == [ANSWER.detections]
    assert len(detects(seen)) == 3


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (422, "invalid_parameter", "min_score must be within [0, 1]"),
        (400, "invalid_input", "not a JPEG, PNG or WebP image"),
        (404, "model_not_found", "no version 2 of model 'wally'"),
        (413, "payload_too_large", "41000000 pixels; at most 40000000"),
    ],
)
def test_a_refusal_naming_the_requests_mistake_is_invalid_parameter(
    image: ValidImage, status: int, code: str, message: str
) -> None:
    seen: list[httpx.Request] = []
    with pytest.raises(errors.InvalidParameter) as refused:
        predictor(iter([error(status, code, message)]), seen)([image], 2)
    assert refused.value.message == f"the gateway refused pool/poster-0007.png: {code}: {message}"
    assert refused.value.details == {"image": "pool/poster-0007.png", "code": code}
    assert isinstance(refused.value.__cause__, errors.SpotterError)
    assert len(detects(seen)) == 1  # not retried: it would be refused again


@pytest.mark.parametrize(
    ("answer", "raised"),
    [
        (error(502, "upstream_error", "the model server failed: INTERNAL"), errors.UpstreamError),
        (error(504, "deadline_exceeded", "no answer from model 'wally' within 30s"), errors.DeadlineExceeded),
        (httpx.Response(500, text="Internal Server Error"), errors.UpstreamError),
        (httpx.Response(200, text="<html>a proxy's page</html>"), errors.UpstreamError),
        (error(401, "unauthenticated", "an API key is needed"), errors.Unauthenticated),
    ],
)
def test_the_gateways_own_trouble_is_not_the_users_mistake(
    image: ValidImage, answer: httpx.Response, raised: type[errors.SpotterError]
) -> None:
    seen: list[httpx.Request] = []
    with pytest.raises(raised) as failed:
        predictor(iter([answer]), seen)([image], 2)
    assert not isinstance(failed.value, errors.InvalidParameter)
    assert len(detects(seen)) == 1


def test_a_gateway_that_stays_overloaded_or_unreachable_fails_unavailable(image: ValidImage) -> None:
    seen: list[httpx.Request] = []
    with pytest.raises(errors.Overloaded, match="queue full"):
        predictor(lambda _: error(503, "overloaded", "queue full"), seen)([image], 2)
    assert len(detects(seen)) == pool_predict.TRIES

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    seen.clear()
    with pytest.raises(errors.Unavailable, match=re.escape("cannot reach the gateway at http://gateway.test")):
        predictor(unreachable, seen)([image], 2)
    assert len(detects(seen)) == pool_predict.TRIES


def test_it_waits_until_the_version_is_served(monkeypatch: pytest.MonkeyPatch, image: ValidImage) -> None:
    states: Iterator[int | str] = iter([404, "LOADING", "AVAILABLE"])
    asked: list[int | str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            assert asked[-1] == "AVAILABLE", "an image was sent before its version was served"
            return ok()
        asked.append(state := next(states))
        if state == 404:
            return error(404, "model_not_found", "no model 'wally'")
        return httpx.Response(200, content=json.dumps({"versions": [{"version": 3, "state": state}]}))

    monkeypatch.setattr(pool_predict, "SERVED_POLL_S", 0.0)
    params = ActiveLearningParams(model="wally", dataset="wally", pool="pool", predict_via="gateway")
    predict = GatewayPredictor("http://gateway.test", None, params, transport=httpx.MockTransport(handle))
    assert predict([image], 3) == [ANSWER.detections]
    assert asked == [404, "LOADING", "AVAILABLE"]
