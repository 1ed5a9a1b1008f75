"""Shadow canaries end to end: real model server, real HTTP, the session's ``canary`` and ``canaryfail`` models.

``canary`` versions 1 and 2 are the same tiny detector, version 3 a worse one (two classes, boxes shifted right);
``canaryfail`` version 2 fails every Predict and is in shadow through its ``shadow`` label in models.config
(tests/support/session_models.py). Each test has its own gateway, so shadows and promotions never leak.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from tests.gateway.helpers import RunningGateway, gateway_settings, running_gateway, solid
from tests.support.modelserver import ModelServerHandle

pytestmark = pytest.mark.integration

KEY = "shadow-test-key"
AUTH = {"X-API-Key": KEY}
MIN_SAMPLES = 8


@pytest.fixture
def gateway(
    model_server: ModelServerHandle, tiny_models: Any, request: pytest.FixtureRequest
) -> Iterator[RunningGateway]:
    # No shedding while the tests send one request at a time (a version's first Predict can be slow, so shadow
    # runs pile up behind it); the load test sets the defaults back to see shedding.
    # The session's models.config is shared by every test: promotions stay in the gateway here (test_rollout_config.py
    # has its own file, and records them there).
    overrides: dict[str, object] = dict(
        shadow_max_concurrent=64,
        shadow_max_queued=1000,
        shadow_max_inflight_batches=1000,
        rollout_writes_model_config=False,
    )
    overrides.update(getattr(request, "param", {}))
    settings = gateway_settings(
        model_server.grpc_target,
        model_config_file=tiny_models / "models.config",
        model_root=tiny_models / "root",
        api_keys=[KEY],
        promote_min_samples=MIN_SAMPLES,
        **overrides,
    )
    with running_gateway(settings) as running:
        yield running


@pytest.fixture
def http(gateway: RunningGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        _wait_until_loaded(client, "canary", {1, 2, 3})
        _wait_until_loaded(client, "canaryfail", {1, 2})
        yield client


def _wait_until_loaded(http: httpx.Client, model: str, versions: set[int]) -> None:
    def loaded() -> bool:
        body = http.get(f"/v1/models/{model}").json()
        return {v["version"] for v in body.get("versions", []) if v["state"] == "AVAILABLE"} >= versions

    Retrying(retry=retry_if_result(lambda ok: not ok), stop=stop_after_delay(60), wait=wait_fixed(0.2))(loaded)
    assert loaded(), f"{model} versions {versions} did not load within 60 s"


def detect(http: httpx.Client, model: str, query: str = "min_score=0") -> httpx.Response:
    return http.post(f"/v1/models/{model}:detect?{query}", content=solid(32, 32), headers={"Content-Type": "image/png"})


def shadow(http: httpx.Client, model: str, version: int, **body: object) -> httpx.Response:
    return http.post(f"/v1/models/{model}/versions/{version}:shadow", json=body, headers=AUTH)


def promote(http: httpx.Client, model: str, version: int, **body: object) -> httpx.Response:
    return http.post(f"/v1/models/{model}/versions/{version}:promote", json=body, headers=AUTH)


def figures(http: httpx.Client, model: str, version: int) -> dict[str, Any]:
    response = http.get(f"/v1/models/{model}/versions/{version}/shadow", headers=AUTH)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_for_samples(http: httpx.Client, model: str, version: int, count: int) -> dict[str, Any]:
    """The shadow's figures once ``count`` samples are in (shadow runs end after their requests were answered)."""
    done = Retrying(
        retry=retry_if_result(lambda body: body["samples"] < count),
        stop=stop_after_delay(30),
        wait=wait_fixed(0.05),
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else {"samples": -1},
    )(lambda: figures(http, model, version))
    assert done["samples"] == count, repr(done)
    return done


def serve_version_1(http: httpx.Client) -> None:
    """Pin canary's served version to 1 (a forced promotion), as an operator would before a canary."""
    response = promote(http, "canary", 1, force=True)
    assert response.status_code == 200, response.text
    assert detect(http, "canary").json()["version"] == 1


def test_a_shadow_of_the_same_model_agrees_fully_and_is_promoted(
    http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    serve_version_1(http)
    started = shadow(http, "canary", 2, sample_rate=1.0)
    assert started.status_code == 200, started.text
    assert (started.json()["served_version"], started.json()["sample_rate"]) == (1, 1.0)
    before = REGISTRY.get_sample_value("spotter_shadow_agreement_count", {"model": "canary", "version": "2"}) or 0
    for _ in range(MIN_SAMPLES):
        response = detect(http, "canary")
        assert response.status_code == 200 and response.json()["version"] == 1  # the shadow never answers
    body = wait_for_samples(http, "canary", 2, MIN_SAMPLES)
    assert body["failures"] == 0
    assert body["agreement"] == {"mean": 1.0, "ci95": [1.0, 1.0]}
    assert body["exact_agreement"]["share"] == 1.0 and body["exact_agreement"]["ci95"][0] < 1.0
    assert (body["precision"], body["recall"], body["score_shift"]) == (1.0, 1.0, 0.0)
    assert body["latency_seconds"]["served"] > 0 and body["latency_seconds"]["shadow"] > 0
    assert body["promotion"]["ready"] is True
    after = REGISTRY.get_sample_value("spotter_shadow_agreement_count", {"model": "canary", "version": "2"})
    assert after == before + MIN_SAMPLES

    with caplog.at_level(logging.INFO, logger="services.gateway.shadow"):
        promoted = promote(http, "canary", 2)
    assert promoted.status_code == 200, promoted.text
    assert promoted.json() == {
        "model": "canary",
        "served_version": 2,
        "previous_version": 1,
        "force": False,
        "scope": "process",
    }
    assert detect(http, "canary").json()["version"] == 2
    [line] = [r for r in caplog.records if getattr(r, "event", None) == "promote"]
    assert (line.model, line.version, line.previous_version, line.samples) == ("canary", 2, 1, MIN_SAMPLES)  # type: ignore[attr-defined]
    assert line.by.startswith("key:") and KEY not in line.getMessage()  # type: ignore[attr-defined]
    assert http.get("/v1/models/canary/versions/2/shadow", headers=AUTH).status_code == 404  # no longer a shadow


def test_a_worse_shadow_disagrees_and_promotion_refuses_it_until_forced(http: httpx.Client) -> None:
    serve_version_1(http)
    assert shadow(http, "canary", 3, sample_rate=1.0).status_code == 200
    early = promote(http, "canary", 3)
    assert early.status_code == 409
    assert f"{MIN_SAMPLES} more" in early.json()["error"]["message"]
    for _ in range(MIN_SAMPLES):
        assert detect(http, "canary").json()["version"] == 1
    body = wait_for_samples(http, "canary", 3, MIN_SAMPLES)
    # Every served box is missed: the worse version's boxes overlap them at IoU < 0.5, and it lacks a class.
    assert body["agreement"]["mean"] == 0.0 and (body["precision"], body["recall"]) == (0.0, 0.0)
    assert body["promotion"]["ready"] is False

    refused = promote(http, "canary", 3)
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert "below the 0.9 promotion needs" in error["message"] and error["details"]["agreement"]["mean"] == 0.0
    assert detect(http, "canary").json()["version"] == 1  # still served by version 1

    forced = promote(http, "canary", 3, force=True)
    assert forced.status_code == 200 and forced.json()["force"] is True
    assert detect(http, "canary").json()["version"] == 3


@pytest.mark.parametrize(
    ("gateway", "model", "version"),
    [
        ({"shadow_default_sample_rate": 1.0}, "canaryfail", 2),  # labelled `shadow`, every Predict fails
        ({"shadow_timeout_seconds": 1e-6}, "canary", 2),  # a shadow that cannot answer in time
    ],
    indirect=["gateway"],
    ids=["failing", "timing-out"],
)
def test_a_failing_shadow_counts_as_disagreement_and_the_client_never_sees_it(
    http: httpx.Client, model: str, version: int
) -> None:
    if model == "canary":
        serve_version_1(http)
        assert shadow(http, model, version, sample_rate=1.0).status_code == 200
    for _ in range(MIN_SAMPLES):
        response = detect(http, model)
        assert response.status_code == 200, response.text
        assert response.json()["version"] == 1
    body = wait_for_samples(http, model, version, MIN_SAMPLES)
    assert body["failures"] == MIN_SAMPLES and body["agreement"]["mean"] == 0.0
    assert body["source"] == ("config" if model == "canaryfail" else "api")


def test_bad_shadow_and_promotion_requests_are_4xx_naming_the_fix(http: httpx.Client) -> None:
    def error(response: httpx.Response, status: int) -> str:
        assert response.status_code == status, response.text
        message: str = response.json()["error"]["message"]
        return message

    assert "has no version 9" in error(shadow(http, "canary", 9), 404)
    assert "no model named" in error(shadow(http, "nosuchmodel", 1), 404)
    assert "sample_rate" in error(shadow(http, "canary", 2, sample_rate=1.5), 422)
    assert "sample_rate" in error(shadow(http, "canary", 2, sample_rate=-0.1), 422)
    assert "only AVAILABLE version" in error(shadow(http, "tiny", 1), 409)
    assert "only detectors" in error(shadow(http, "cls", 1), 422)
    assert "not in shadow" in error(http.get("/v1/models/canary/versions/2/shadow", headers=AUTH), 404)
    assert "not in shadow" in error(promote(http, "canary", 2), 404)
    assert "has no version 9" in error(promote(http, "canary", 9, force=True), 404)
    no_key = http.post("/v1/models/canary/versions/2:shadow", json={})
    assert no_key.status_code == 401
    bad_key = http.post("/v1/models/canary/versions/2:promote", json={}, headers={"X-API-Key": "wrong"})
    assert bad_key.status_code == 403
    assert shadow(http, "canary", 2).json()["sample_rate"] == 0.1  # no body field: the configured default
    assert http.delete("/v1/models/canary/versions/2/shadow", headers=AUTH).status_code == 200
    assert http.delete("/v1/models/canary/versions/2/shadow", headers=AUTH).status_code == 404


@pytest.mark.parametrize(
    "gateway",
    [{"shadow_max_concurrent": 2, "shadow_max_queued": 0, "shadow_max_inflight_batches": None}],
    indirect=True,
)
def test_under_load_with_a_shadow_every_served_request_succeeds(http: httpx.Client, gateway: RunningGateway) -> None:
    serve_version_1(http)
    assert shadow(http, "canary", 2, sample_rate=1.0).status_code == 200
    clients, each = 16, 10

    def client(_: int) -> list[int]:
        with httpx.Client(base_url=gateway.url, timeout=30) as own:
            return [detect(own, "canary").status_code for _ in range(each)]

    with ThreadPoolExecutor(clients) as pool:
        statuses = [status for batch in pool.map(client, range(clients)) for status in batch]
    assert statuses == [200] * (clients * each)
    # Every served request was either compared or shed (counted), none lost; the shed ones cost nothing.
    total = clients * each

    def accounted() -> dict[str, Any]:
        body = figures(http, "canary", 2)
        body["accounted"] = body["samples"] + sum(body["dropped"].values())
        return body

    body = Retrying(
        retry=retry_if_result(lambda b: b["accounted"] < total), stop=stop_after_delay(30), wait=wait_fixed(0.05)
    )(accounted)
    assert body["accounted"] == total, body
    assert body["failures"] == 0
    # Once the load is over there is spare capacity again: one request at a time, each is compared.
    for _ in range(3):
        assert detect(http, "canary").status_code == 200
    after = wait_for_samples(http, "canary", 2, body["samples"] + 3)
    assert after["agreement"]["mean"] == 1.0 and sum(after["dropped"].values()) == total - body["samples"]
