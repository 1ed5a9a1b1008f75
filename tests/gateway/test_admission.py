"""Overload against a real gateway and model server: refused before the body is read, accepted ones on time.

The gateway admits ``max_queue_size + max_batch_size * max_inflight_batches`` inference requests at once (6 here);
the one past it is a 503 before its body is read or decoded, which the decode counter shows. An accepted image that
waits in the queue longer than ``queue_deadline_ms`` is refused too, so no served request waited longer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import pytest

from services.client.rpc import DetectionClient
from services.errors import SpotterError
from services.gateway.config import GatewaySettings
from tests.gateway.helpers import RunningGateway, encode, gateway_settings, running_gateway
from tests.rpc.helpers import grpc_target, metric_value, wait_for
from tests.support.modelserver import ModelServerHandle

pytestmark = pytest.mark.integration

CLIENTS = 64
DEADLINE_MS = 250  # a bucket bound of spotter_queue_seconds


def settings(model_server: ModelServerHandle) -> GatewaySettings:
    return gateway_settings(
        model_server.grpc_target,
        grpc_host="127.0.0.1",
        max_queue_size=4,
        max_batch_size=2,
        max_inflight_batches=1,
        max_batch_delay_ms=20,
        queue_deadline_ms=DEADLINE_MS,
        retry_after_seconds=2,
        http_body_idle_timeout_seconds=120,  # the stalled uploads below hold their places for the whole burst
    )


@pytest.fixture(scope="module")
def gateway(model_server: ModelServerHandle) -> Iterator[RunningGateway]:
    with running_gateway(settings(model_server)) as running:
        assert running.app.state.dataplane.admission.limit == 6
        yield running


def photo(seed: int) -> bytes:
    return encode(np.random.default_rng(seed).integers(0, 256, (240, 320, 3), dtype=np.uint8), "JPEG")


def counters(gateway: RunningGateway) -> dict[str, float]:
    shed = {
        reason: metric_value(gateway, "spotter_shed_requests_total", reason=reason)
        for reason in ("admission", "queue_full", "deadline")
    }
    return {
        "decodes": metric_value(gateway, "spotter_decode_seconds_count", model="tiny"),
        "queued": metric_value(gateway, "spotter_queue_seconds_count", model="tiny"),
        "queued_in_deadline": metric_value(
            gateway, "spotter_queue_seconds_bucket", model="tiny", le=str(DEADLINE_MS / 1000)
        ),
        "rejected_503": metric_value(
            gateway, "spotter_request_duration_seconds_count", endpoint="detect", status="503"
        ),
        **shed,
    }


def burst(url: str, bodies: list[bytes]) -> list[httpx.Response]:
    """Every body posted at once, one thread (and one connection) each."""
    start = threading.Barrier(len(bodies))
    answers: list[httpx.Response | None] = [None] * len(bodies)

    def client(index: int) -> None:
        with httpx.Client(timeout=60) as http:
            start.wait()
            answers[index] = http.post(
                f"{url}/v1/models/tiny:detect?tile=off", content=bodies[index], headers={"Content-Type": "image/jpeg"}
            )

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert all(answer is not None for answer in answers)
    return [answer for answer in answers if answer is not None]


def assert_overloaded(response: httpx.Response) -> str:
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "overloaded"
    assert response.headers["Retry-After"] == "2"
    reason: str = error["details"]["reason"]
    return reason


def test_past_the_limit_requests_are_refused_before_their_body_is_read(
    gateway: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    admission = gateway.app.state.dataplane.admission
    image = photo(0)
    release = threading.Event()
    held: list[httpx.Response] = []

    def stalled() -> None:
        def body() -> Iterator[bytes]:
            yield image[:100]
            release.wait(60)
            yield image[100:]

        with httpx.Client(timeout=60) as http:
            held.append(
                http.post(
                    f"{gateway.url}/v1/models/tiny:detect?tile=off",
                    content=body(),
                    headers={"Content-Type": "image/jpeg"},
                )
            )

    # Six clients take every place and stall in the middle of their bodies.
    holders = [threading.Thread(target=stalled) for _ in range(admission.limit)]
    for thread in holders:
        thread.start()
    try:
        assert wait_for(lambda: admission.admitted == admission.limit, timeout=30)
        before = counters(gateway)
        with caplog.at_level(logging.WARNING):
            refused = burst(gateway.url, [photo(i) for i in range(CLIENTS - admission.limit)])
            with DetectionClient(grpc_target(gateway), timeout=30) as rpc, pytest.raises(SpotterError) as raised:
                rpc.detect(image, model="tiny", content_type="image/jpeg", tile="off")
        after = counters(gateway)
    finally:
        release.set()
        for thread in holders:
            thread.join(60)

    assert {assert_overloaded(response) for response in refused} == {"admission"}
    cause = raised.value.__cause__
    assert isinstance(cause, grpc.RpcError) and cause.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert after["admission"] - before["admission"] == len(refused) + 1  # the REST burst and the gRPC call
    assert after["decodes"] == before["decodes"]  # none of them was decoded
    # Overload is logged as a rate: at most one line for the 59 refusals, none per request.
    overload_lines = [r for r in caplog.records if r.levelno >= logging.WARNING and "overload" in r.getMessage()]
    assert len(overload_lines) <= 1, [r.getMessage() for r in overload_lines]
    # The held requests were served once their bodies came, and their places came back.
    assert [response.status_code for response in held] == [200] * admission.limit
    assert counters(gateway)["decodes"] == before["decodes"] + admission.limit
    assert wait_for(lambda: admission.admitted == 0)


def test_a_burst_is_served_within_the_deadline_or_refused(gateway: RunningGateway) -> None:
    before = counters(gateway)
    responses = burst(gateway.url, [photo(i) for i in range(CLIENTS)])
    after = counters(gateway)
    delta = {name: after[name] - before[name] for name in after}

    served = [r for r in responses if r.status_code == 200]
    reasons = [assert_overloaded(r) for r in responses if r.status_code != 200]  # no status but 200 and 503
    assert served, "the burst must not refuse every request"
    assert len(served) + len(reasons) == CLIENTS
    assert delta["rejected_503"] == len(reasons)
    for reason in ("admission", "queue_full", "deadline"):
        assert delta[reason] == reasons.count(reason)
    # Only admitted requests were decoded: those served and those refused after their decode (queue, deadline).
    assert delta["decodes"] == len(served) + reasons.count("queue_full") + reasons.count("deadline")
    # Every image that reached the model server had waited less than the deadline in the queue.
    assert delta["queued"] >= len(served)
    assert delta["queued_in_deadline"] == delta["queued"]
