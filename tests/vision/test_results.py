"""The answer types and their two wire forms: a realistic answer reads back equal through the REST API's JSON and
through the ``spotter.v1`` messages, the JSON has the REST API's shape, and reading checks what it reads."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from pydantic import ValidationError

from services.gen.spotter.v1 import detection_pb2
from services.vision.results import Box, Classification, ClassifyResult, Detection, DetectResult

LABELS = ["wally", "wenda", "odlaw", "señor café", "狗", "Ελλάδα 🚲"]
"""Label-map names as users write them: accents, CJK, Greek and an emoji (outside the BMP)."""


def poster_result(count: int = 100, seed: int = 13) -> DetectResult:
    """What the gateway answers for a 2000 x 1414 poster: boxes anywhere in its pixels (fractions included, some on
    its edges), float32 scores by score descending, unicode labels."""
    rng = random.Random(seed)
    width, height = 2000, 1414
    found = []
    for _ in range(count):
        w, h = rng.uniform(4.0, 240.0), rng.uniform(4.0, 240.0)
        x, y = rng.uniform(-w / 2, width - w / 2), rng.uniform(-h / 2, height - h / 2)
        box = Box(x, y, x + w, y + h).clip(width, height)
        score = float(np.float32(rng.uniform(0.05, 1.0)))  # a model's float32, as the gateway passes it on
        class_id = rng.randint(1, len(LABELS))
        found.append(Detection(LABELS[class_id - 1], class_id, score, box))
    found.sort(key=lambda d: -d.score)
    return DetectResult("wally-finder", 12, width, height, found)


def through_proto(result: DetectResult) -> DetectResult:
    wire = result.to_proto().SerializeToString()
    return DetectResult.from_proto(detection_pb2.DetectResponse.FromString(wire))


def test_a_poster_answer_reads_back_equal_through_json_and_through_protobuf() -> None:
    result = poster_result()
    assert any(d.box.xmin == 0.0 for d in result.detections) and any(d.box.xmax == 2000 for d in result.detections)
    by_json = DetectResult.from_json(result.to_json())
    by_proto = through_proto(result)
    assert by_json == result
    assert by_proto == result
    assert by_json == by_proto
    assert [type(d.box.xmin) for d in by_json.detections[:3]] == [float] * 3
    empty = DetectResult("wally-finder", 1, 640, 480, [])
    assert DetectResult.from_json(empty.to_json()) == through_proto(empty) == empty


def test_a_classify_answer_reads_back_equal_through_json_and_through_protobuf() -> None:
    rng = random.Random(7)
    scores = sorted((float(np.float32(rng.random())) for _ in LABELS), reverse=True)
    result = ClassifyResult(
        "poster-kind", 3, [Classification(n, i + 1, s) for i, (n, s) in enumerate(zip(LABELS, scores, strict=True))]
    )
    wire = result.to_proto().SerializeToString()
    by_proto = ClassifyResult.from_proto(detection_pb2.ClassifyResponse.FromString(wire))
    assert ClassifyResult.from_json(result.to_json()) == by_proto == result


def test_the_json_is_the_rest_apis_answer() -> None:
    result = poster_result(count=3)
    body = json.loads(result.to_json())
    assert list(body) == ["model", "version", "width", "height", "detections"]
    first = result.detections[0]
    assert body["detections"][0] == {
        "label": first.label,
        "class_id": first.class_id,
        "score": first.score,
        "box": {"xmin": first.box.xmin, "ymin": first.box.ymin, "xmax": first.box.xmax, "ymax": first.box.ymax},
    }
    assert result.to_dict() == body
    unicode = DetectResult("m", 1, 10, 10, [Detection("狗 🚲", 5, 0.5, Box(1.0, 2.0, 3.0, 4.0))])
    assert "狗 🚲".encode() in unicode.to_json()  # UTF-8 as it is, not \\u escapes
    assert json.loads(ClassifyResult("m", 2, [Classification("señor", 1, 0.25)]).to_json()) == {
        "model": "m",
        "version": 2,
        "predictions": [{"label": "señor", "class_id": 1, "score": 0.25}],
    }


def test_the_message_is_the_one_built_field_by_field() -> None:
    result = poster_result(count=5)
    expected = detection_pb2.DetectResponse(
        model=result.model,
        version=result.version,
        width=result.width,
        height=result.height,
        detections=[
            detection_pb2.Detection(
                label=d.label,
                class_id=d.class_id,
                score=d.score,
                box=detection_pb2.Box(xmin=d.box.xmin, ymin=d.box.ymin, xmax=d.box.xmax, ymax=d.box.ymax),
            )
            for d in result.detections
        ],
    )
    assert result.to_proto() == expected
    assert result.to_proto().SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)


def test_protobuf_carries_a_score_as_float32() -> None:
    exact = DetectResult("m", 1, 100, 100, [Detection("a", 1, 0.1, Box(0.1, 0.2, 50.3, 60.7))])
    [read] = through_proto(exact).detections
    assert read.score == float(np.float32(0.1)) != 0.1  # the proto's `float`, as a model computes it
    assert read.box == exact.detections[0].box  # boxes are doubles: nothing rounded


def test_reading_json_checks_it_and_ignores_fields_it_does_not_know() -> None:
    body = json.loads(poster_result(count=2).to_json())
    body["detections"][0]["track_id"] = 7  # what a newer gateway might add
    body["request_id"] = "abc"
    assert DetectResult.from_json(json.dumps(body)) == poster_result(count=2)
    del body["detections"][1]["box"]
    with pytest.raises(ValidationError, match="box"):
        DetectResult.from_json(json.dumps(body))
    with pytest.raises(ValueError):
        DetectResult.from_json(b'{"model": "m", "version": "three", "width": 1, "height": 1, "detections": []}')
    with pytest.raises(ValueError):
        ClassifyResult.from_json(b"<html>502 Bad Gateway</html>")
