"""gRPC and REST share the batcher: their requests land in the same batches, a full queue refuses both, and a gRPC
call that is cancelled, disconnected or past its deadline leaves the queue."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest

from services import errors
from services.client.rpc import DetectionClient, detect_request
from services.gen.spotter.v1 import detection_pb2, detection_pb2_grpc
from tests.gateway.helpers import RunningGateway, running_gateway, solid
from tests.rpc.helpers import failure, grpc_target, metric_value, predict_calls, rpc_settings, wait_for
from tests.support.modelserver import ModelServerHandle

pytestmark = pytest.mark.integration

EACH = 6  # requests per transport


def test_grpc_and_rest_requests_share_batches(model_server: ModelServerHandle, tiny_models: Path) -> None:
    # A batch leaves when it holds both transports' requests (2 x EACH) or after 5 s: all of them fit in one.
    settings = rpc_settings(model_server, tiny_models, max_batch_size=2 * EACH, max_batch_delay_ms=5_000)
    with running_gateway(settings) as gateway, DetectionClient(grpc_target(gateway), timeout=60) as client:
        images = [solid(16 + i, 16, value=100 + i) for i in range(2 * EACH)]
        start = threading.Barrier(2 * EACH, timeout=30)

        def over_rest(image: bytes) -> int:
            start.wait()
            query = "min_score=0&tile=off"
            response = httpx.post(
                f"{gateway.url}/v1/models/tiny:detect?{query}",
                content=image,
                headers={"Content-Type": "image/png"},
                timeout=60,
            )
            assert response.status_code == 200, response.text
            return len(response.json()["detections"])

        def over_grpc(image: bytes) -> int:
            start.wait()
            return len(client.detect(image, model="tiny", min_score=0.0, tile="off").detections)

        client.list_models()  # the catalog's own calls (the labels signature is a Predict too) come first
        batches = {"model": "tiny", "version": "1"}
        calls_before = predict_calls(model_server, "tiny")
        batches_before = metric_value(gateway, "spotter_batch_size_count", **batches)
        small_before = metric_value(gateway, "spotter_batch_size_bucket", le=f"{EACH}.0", **batches)
        with ThreadPoolExecutor(2 * EACH) as pool:
            sent_over = [pool.submit(over_rest, image) for image in images[:EACH]]
            sent_over += [pool.submit(over_grpc, image) for image in images[EACH:]]
            found = [future.result(timeout=60) for future in sent_over]
        assert found == [3] * (2 * EACH)

        calls = predict_calls(model_server, "tiny") - calls_before
        sent = metric_value(gateway, "spotter_batch_size_count", **batches) - batches_before
        small = metric_value(gateway, "spotter_batch_size_bucket", le=f"{EACH}.0", **batches) - small_before
        assert 0 < calls < 2 * EACH, f"{2 * EACH} requests took {calls} Predict calls"
        assert sent == calls
        # A batch of more than EACH images holds requests of both transports: neither sent that many.
        assert sent - small >= 1, "no batch held both gRPC and REST requests"


@pytest.fixture(scope="module")
def slow(model_server: ModelServerHandle, tiny_models: Path) -> Iterator[RunningGateway]:
    """Batches wait a minute to fill and the queue holds two images: a request stays queued until it leaves."""
    settings = rpc_settings(
        model_server,
        tiny_models,
        max_batch_size=64,
        max_batch_delay_ms=60_000,
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
