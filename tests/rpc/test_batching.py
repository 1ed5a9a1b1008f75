"""gRPC and REST share the batcher, whose dispatch is work-conserving: a lone request goes to the model server at
once, requests that arrive while the upstream is busy share one batch (of both transports), and the batch delay is
an upper bound, never a wait a request pays. A full queue refuses both transports, and a gRPC call that is cancelled,
disconnected or past its deadline leaves the queue. Dispatches are counted (``spotter_batch_dispatches_total``,
``spotter_batch_size``, the model server's own Predict count), never timed."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from services import errors
from services.client.rpc import DetectionClient, detect_request
from services.gen.spotter.v1 import detection_pb2, detection_pb2_grpc
from tests.gateway.helpers import RunningGateway, running_gateway, solid
from tests.rpc.helpers import failure, grpc_target, metric_value, predict_calls, rpc_settings, wait_for
from tests.support.modelserver import ModelServerHandle

pytestmark = pytest.mark.integration

EACH = 6  # requests per transport
TINY = {"model": "tiny", "version": "1"}
REASONS = ("idle", "full", "waited")
# Far longer than any request may wait (the gateway answers 504 after 30 s): a batch that waited for it would fail.
A_MINUTE_MS = 60_000


class HeldUpstream:
    """Holds the gateway's ``serving_default`` Predicts while engaged (they then go to the real model server), so
    the upstream stays busy for as long as a test needs; the catalog's own calls (``labels``) pass."""

    def __init__(self, gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch) -> None:
        tfs = gateway.app.state.tfs
        self._predict = tfs.predict
        self._gate = threading.Event()
        self._gate.set()
        self.entered = 0
        monkeypatch.setattr(tfs, "predict", self._held)

    async def _held(self, model: str, inputs: Mapping[str, np.ndarray], **options: Any) -> dict[str, np.ndarray]:
        if options.get("signature", "serving_default") == "serving_default":
            self.entered += 1
            await asyncio.to_thread(self._gate.wait, 60)  # the test thread releases it; the loop keeps serving
        result: dict[str, np.ndarray] = await self._predict(model, inputs, **options)
        return result

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()


def dispatches(gateway: RunningGateway) -> dict[str, float]:
    """Batches sent so far for the tiny model, by the reason they left, and their count and images."""
    counts = {r: metric_value(gateway, "spotter_batch_dispatches_total", reason=r, **TINY) for r in REASONS}
    counts["batches"] = metric_value(gateway, "spotter_batch_size_count", **TINY)
    counts["images"] = metric_value(gateway, "spotter_batch_size_sum", **TINY)
    return counts


def since(gateway: RunningGateway, before: dict[str, float]) -> dict[str, float]:
    return {key: value - before[key] for key, value in dispatches(gateway).items()}


def rest_detect_count(gateway: RunningGateway, image: bytes) -> int:
    response = httpx.post(
        f"{gateway.url}/v1/models/tiny:detect?min_score=0&tile=off",
        content=image,
        headers={"Content-Type": "image/png"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return len(response.json()["detections"])


@pytest.fixture(scope="module")
def patient(model_server: ModelServerHandle, tiny_models: Path) -> Iterator[RunningGateway]:
    """The default dispatch with a batch delay of a minute and one Predict slot."""
    settings = rpc_settings(
        model_server, tiny_models, max_batch_size=64, max_batch_delay_ms=A_MINUTE_MS, max_inflight_batches=1
    )
    with running_gateway(settings) as running:
        yield running


def test_a_lone_request_reaches_the_model_server_without_waiting_for_the_delay(
    patient: RunningGateway, model_server: ModelServerHandle
) -> None:
    with DetectionClient(grpc_target(patient), timeout=60) as client:
        client.list_models()  # the catalog's own calls (the labels signature is a Predict too) come first
        for transport in ("rest", "grpc"):
            calls_before, before = predict_calls(model_server, "tiny"), dispatches(patient)
            if transport == "rest":
                assert rest_detect_count(patient, solid(16, 16, value=120)) == 3
            else:
                assert len(client.detect(solid(16, 16, value=120), model="tiny", min_score=0.0).detections) == 3
            sent = since(patient, before)
            # One batch of one image left because the slot was free ("idle"), not because it filled or waited.
            assert sent == {"idle": 1, "full": 0, "waited": 0, "batches": 1, "images": 1}, transport
            assert predict_calls(model_server, "tiny") - calls_before == 1, transport


def test_with_the_upstream_busy_concurrent_requests_of_both_transports_share_a_batch(
    patient: RunningGateway, model_server: ModelServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream = HeldUpstream(patient, monkeypatch)
    with DetectionClient(grpc_target(patient), timeout=60) as client, ThreadPoolExecutor(2 * EACH + 1) as pool:
        client.list_models()
        calls_before, before = predict_calls(model_server, "tiny"), dispatches(patient)
        upstream.hold()
        first = pool.submit(rest_detect_count, patient, solid(16, 16, value=99))
        assert wait_for(lambda: upstream.entered == 1), "the first request never reached the upstream"
        images = [solid(16 + i, 16, value=100 + i) for i in range(2 * EACH)]
        over_grpc = [
            pool.submit(lambda image: len(client.detect(image, model="tiny", min_score=0.0).detections), image)
            for image in images[EACH:]
        ]
        sent_over = [pool.submit(rest_detect_count, patient, image) for image in images[:EACH]] + over_grpc
        # The only slot is busy: every request waits in the queue, together.
        assert wait_for(lambda: patient.app.state.batcher.pending == 2 * EACH), "the requests never queued"
        assert upstream.entered == 1
        upstream.release()
        assert [future.result(timeout=60) for future in [first, *sent_over]] == [3] * (2 * EACH + 1)

    sent = since(patient, before)
    # The first left alone at once; all the others in one batch when the slot freed (not after the minute's delay):
    # 2 * EACH images in one batch, so it held requests of both transports.
    assert sent == {"idle": 1, "full": 0, "waited": 1, "batches": 2, "images": 2 * EACH + 1}
    assert predict_calls(model_server, "tiny") - calls_before == 2


def test_the_batch_delay_is_an_upper_bound_not_a_wait(patient: RunningGateway, model_server: ModelServerHandle) -> None:
    # Concurrent requests, none of them held: however they fall into batches, none waits for the minute's delay.
    images = [solid(16 + i, 16, value=100 + i) for i in range(2 * EACH)]
    start = threading.Barrier(2 * EACH, timeout=30)

    def detect(image: bytes) -> int:
        start.wait()
        return rest_detect_count(patient, image)

    calls_before, before = predict_calls(model_server, "tiny"), dispatches(patient)
    with ThreadPoolExecutor(2 * EACH) as pool:
        assert list(pool.map(detect, images, timeout=60)) == [3] * (2 * EACH)
    sent = since(patient, before)
    assert sent["images"] == 2 * EACH
    assert sent["full"] == 0
    assert sent["idle"] + sent["waited"] == sent["batches"] == predict_calls(model_server, "tiny") - calls_before
    assert sent["idle"] >= 1


@pytest.fixture(scope="module")
def slow(model_server: ModelServerHandle, tiny_models: Path) -> Iterator[RunningGateway]:
    """The fixed-delay dispatch (not the default): batches wait a minute to fill and the queue holds two images, so
    a request stays queued until it leaves (these tests are about the queue, not about dispatch)."""
    settings = rpc_settings(
        model_server,
        tiny_models,
        batch_work_conserving=False,
        max_batch_size=64,
        max_batch_delay_ms=A_MINUTE_MS,
        max_queue_size=2,
        retry_after_seconds=3,
    )
    with running_gateway(settings) as running:
        yield running


def pending(gateway: RunningGateway) -> int:
    return int(gateway.app.state.batcher.pending)


def queue_depth(gateway: RunningGateway) -> float:
    return metric_value(gateway, "spotter_queue_depth", model="tiny", version="1")


def test_a_full_queue_is_resource_exhausted_and_cancelled_calls_free_their_places(slow: RunningGateway) -> None:
    request = detect_request(solid(8, 8), model="tiny")
    with DetectionClient(grpc_target(slow)) as client, grpc.insecure_channel(grpc_target(slow)) as channel:
        stub = detection_pb2_grpc.DetectionServiceStub(channel)  # type: ignore[no-untyped-call]
        queued = [stub.Detect.future(request, timeout=120) for _ in range(2)]
        assert wait_for(lambda: pending(slow) == 2), "the calls never reached the queue"
        assert queue_depth(slow) == 2

        code, error, trailers = failure(lambda: client.detect(solid(8, 8), model="tiny"))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert isinstance(error, errors.Overloaded) and error.retry_after == 3
        assert trailers["retry-after"] == "3"
        rest = httpx.post(
            f"{slow.url}/v1/models/tiny:detect", content=solid(8, 8), headers={"Content-Type": "image/png"}
        )
        assert rest.status_code == 503  # the same queue for both transports

        for call in queued:
            call.cancel()
        assert wait_for(lambda: pending(slow) == 0), "cancelled calls are still queued"
        assert queue_depth(slow) == 0
        assert all(call.cancelled() for call in queued)
        # There is room again: a new call gets in (and leaves at its deadline: the batch would wait a minute).
        code, error, _ = failure(lambda: client.detect(solid(8, 8), model="tiny", timeout=0.5))
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED


def test_a_deadline_bounds_the_wait_and_frees_the_place(slow: RunningGateway) -> None:
    timed_out = {"endpoint": "grpc_detect", "model": "tiny", "status": "504"}
    before = metric_value(slow, "spotter_request_duration_seconds_count", **timed_out)
    with DetectionClient(grpc_target(slow)) as client:
        code, error, _ = failure(lambda: client.detect(solid(8, 8), model="tiny", timeout=0.5))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert isinstance(error, errors.DeadlineExceeded)
    assert wait_for(lambda: pending(slow) == 0)
    # The gateway stopped working on it too: the call was recorded as timed out.
    assert wait_for(lambda: metric_value(slow, "spotter_request_duration_seconds_count", **timed_out) == before + 1)


def test_a_cancelled_or_disconnected_stream_frees_its_places(slow: RunningGateway) -> None:
    for ending in ("cancel", "disconnect"):
        release = threading.Event()

        def frames(release: threading.Event = release) -> Iterator[detection_pb2.DetectStreamRequest]:
            for index in range(2):
                yield detection_pb2.DetectStreamRequest(
                    frame_id=str(index), request=detect_request(solid(8, 8), model="tiny")
                )
            release.wait(30)  # the client keeps the stream open, sending nothing more

        channel = grpc.insecure_channel(grpc_target(slow))
        stub = detection_pb2_grpc.DetectionServiceStub(channel)  # type: ignore[no-untyped-call]
        call = stub.DetectStream(frames())
        assert wait_for(lambda: pending(slow) == 2), f"{ending}: the frames never reached the queue"
        if ending == "cancel":
            call.cancel()
        else:
            channel.close()
        assert wait_for(lambda: pending(slow) == 0), f"{ending}: the stream's frames are still queued"
        assert queue_depth(slow) == 0
        release.set()
        channel.close()
