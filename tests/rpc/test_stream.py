"""``DetectStream``: every frame answered in order with its id, per-frame errors that do not end the stream, a
client that waits for each answer before sending the next frame, and per-frame metrics."""

from __future__ import annotations

import queue
from collections.abc import Iterator

import pytest

from services import errors
from services.client.rpc import DetectionClient
from tests.gateway.helpers import RunningGateway, solid
from tests.rpc.helpers import metric_value

pytestmark = pytest.mark.integration


def test_a_stream_of_100_frames_is_answered_in_order(client: DetectionClient) -> None:
    # Frame i is a grey of value 60 + i: the tiny detector's first score is that value / 255, so each answer
    # shows which frame it belongs to.
    frames = [(f"frame-{i}", solid(16, 16, value=60 + i)) for i in range(100)]
    answers = list(client.detect_stream(frames, model="tiny", min_score=0.0, timeout=120))
    assert [a.frame_id for a in answers] == [frame_id for frame_id, _ in frames]
    for index, answer in enumerate(answers):
        result = answer.unwrap()
        assert (result.model, result.width, result.height) == ("tiny", 16, 16)
        assert result.detections[0].score == pytest.approx((60 + index) / 255, abs=1e-5)


def test_a_bad_frame_is_answered_with_its_error_and_the_stream_goes_on(
    client: DetectionClient, gateway: RunningGateway
) -> None:
    per_frame = {"endpoint": "grpc_detect_stream", "model": "tiny"}
    ok_before = metric_value(gateway, "spotter_request_duration_seconds_count", status="200", **per_frame)
    bad_before = metric_value(gateway, "spotter_request_duration_seconds_count", status="400", **per_frame)
    frames = [solid(16, 16), b"not an image", solid(16, 16), b""]
    answers = list(client.detect_stream(frames, model="tiny", timeout=60))
    assert [a.frame_id for a in answers] == ["0", "1", "2", "3"]
    assert answers[0].error is None and answers[2].error is None
    for bad in (answers[1], answers[3]):
        assert isinstance(bad.error, errors.InvalidInput)
        assert bad.result is None
        with pytest.raises(errors.InvalidInput):
            bad.unwrap()
    missing = list(client.detect_stream([solid(8, 8)], model="no-such-model", timeout=60))
    assert isinstance(missing[0].error, errors.ModelNotFound)
    assert "no-such-model" in missing[0].error.message
    # Each frame is one request in the metrics, with the status a unary call would have had.
    ok = metric_value(gateway, "spotter_request_duration_seconds_count", status="200", **per_frame)
    bad = metric_value(gateway, "spotter_request_duration_seconds_count", status="400", **per_frame)
    assert (ok - ok_before, bad - bad_before) == (2, 2)


def test_a_client_that_waits_for_each_answer_is_served(client: DetectionClient) -> None:
    answered: queue.Queue[str] = queue.Queue()

    def lockstep() -> Iterator[tuple[str, bytes]]:
        for index in range(5):
            yield str(index), solid(16, 16)
            assert answered.get(timeout=30) == str(index)  # the next frame only once this one is answered

    seen = []
    for answer in client.detect_stream(lockstep(), model="tiny", timeout=60):
        answer.unwrap()
        seen.append(answer.frame_id)
        answered.put(answer.frame_id)
    assert seen == ["0", "1", "2", "3", "4"]


def test_an_empty_stream_ends_with_no_answers(client: DetectionClient) -> None:
    assert list(client.detect_stream([], model="tiny", timeout=30)) == []
