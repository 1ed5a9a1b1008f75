from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from services.errors import UpstreamError
from services.vision.labelmap import LabelMap
from services.vision.letterbox import letterbox
from services.vision.outputs import classifications_from_probabilities, detections_from_outputs

LABELS = LabelMap.from_names(["circle", "square"])


def model_outputs(placed, pixel_boxes, scores, classes, padding=3):  # type: ignore[no-untyped-def]
    """What a detector would answer for these boxes, with padding rows after num_detections."""
    boxes = placed.to_normalized(np.array(pixel_boxes, dtype=float))
    n = len(scores)
    boxes = np.concatenate([boxes, np.full((padding, 4), 0.5)]).astype(np.float32)
    scores = np.concatenate([scores, np.full(padding, 0.99)]).astype(np.float32)
    classes = np.concatenate([classes, np.ones(padding)]).astype(np.float32)
    return boxes, scores, classes, np.float32(n)


def test_outputs_become_detections_in_original_pixels() -> None:
    _, placed = letterbox(Image.new("RGB", (1280, 640)), 320)
    truth = [[100, 50, 300, 200], [600, 300, 700, 420], [10, 10, 20, 20]]
    outputs = model_outputs(placed, truth, [0.6, 0.9, 0.2], [1, 2, 7])
    detections = detections_from_outputs(*outputs, placed, LABELS, min_score=0.3)
    assert [(d.label, d.class_id) for d in detections] == [("square", 2), ("circle", 1)]  # by score; padding ignored
    assert np.allclose([d.box.as_tuple() for d in detections], [truth[1], truth[0]], atol=0.01)
    everything = detections_from_outputs(*outputs, placed, LABELS)
    assert [d.label for d in everything] == ["square", "circle", "class_7"]  # an id the map lacks
    assert len(detections_from_outputs(*outputs, placed, None, max_detections=1)) == 1
    assert detections_from_outputs(*outputs, placed, {2: "sq"})[0].label == "sq"


def test_tile_outputs_land_at_the_tiles_offset() -> None:
    _, placed = letterbox(Image.new("RGB", (2000, 1000)), 320, region=(960, 480, 1280, 800))
    truth = [[1000, 500, 1100, 620]]
    detections = detections_from_outputs(*model_outputs(placed, truth, [0.8], [1]), placed, LABELS)
    assert np.allclose(detections[0].box.as_tuple(), truth[0], atol=0.01)


def test_boxes_in_the_padding_and_non_finite_rows_are_dropped() -> None:
    _, placed = letterbox(Image.new("RGB", (640, 320)), 320)  # the canvas's lower half is padding
    boxes = np.array([[0.6, 0.1, 0.9, 0.3], [np.nan, 0, 0.1, 0.1], [0.1, 0.1, 0.2, 0.2]], dtype=np.float32)
    detections = detections_from_outputs(boxes, [0.9, 0.9, 0.5], [1, 1, 2], 3, placed, LABELS)
    assert [d.label for d in detections] == ["square"]


def test_batch_axis_of_one_and_bad_shapes() -> None:
    _, placed = letterbox(Image.new("RGB", (100, 100)), 100)
    boxes = np.array([[[0.1, 0.1, 0.5, 0.5]]])
    assert len(detections_from_outputs(boxes, [[0.5]], [[1]], [1], placed, LABELS)) == 1
    for count in (None, [], [np.nan], np.float32(5)):
        assert len(detections_from_outputs(boxes, [[0.5]], [[1]], count, placed, LABELS)) == 1
    assert detections_from_outputs(boxes, [[0.5]], [[1]], [-2], placed, LABELS) == []
    assert detections_from_outputs(np.zeros((0, 4)), [], [], 0, placed, LABELS) == []
    with pytest.raises(UpstreamError, match="do not fit"):
        detections_from_outputs(np.zeros((2, 4)), [0.5], [1, 1], 2, placed, LABELS)
    with pytest.raises(UpstreamError):
        detections_from_outputs(np.zeros((2, 3)), [0.5, 0.5], [1, 1], 2, placed, LABELS)


def test_top_classes() -> None:
    probabilities = np.array([0.1, 0.6, 0.3], dtype=np.float32)
    top = classifications_from_probabilities(probabilities, LABELS, top_k=2)
    assert [(c.label, c.class_id) for c in top] == [("square", 2), ("class_3", 3)]
    assert top[0].score == pytest.approx(0.6)
    assert top[0].to_dict() == {"label": "square", "class_id": 2, "score": top[0].score}
    assert len(classifications_from_probabilities([probabilities], LABELS, top_k=10, min_score=0.2)) == 2
    with pytest.raises(UpstreamError):
        classifications_from_probabilities(np.zeros((2, 3)), LABELS)
