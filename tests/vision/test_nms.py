from __future__ import annotations

import numpy as np
import pytest

from services.vision.boxes import Box, Detection
from services.vision.nms import batched_nms, merge_detections, nms


def overlap(a: np.ndarray, b: np.ndarray, metric: str) -> float:
    """One pair, written out the slow obvious way."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    denominator = area_a + area_b - inter if metric == "iou" else min(area_a, area_b)
    return inter / denominator if denominator > 0 else 0.0


def reference_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, metric: str = "iou") -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept: list[int] = []
    for i in order:
        if all(overlap(boxes[i], boxes[k], metric) <= threshold for k in kept):
            kept.append(i)
    return kept


def random_boxes(rng: np.random.Generator, n: int, extent: float = 200.0) -> np.ndarray:
    xy = rng.uniform(0, extent, (n, 2))
    wh = rng.uniform(1, extent / 3, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


@pytest.mark.parametrize("metric", ["iou", "ios"])
def test_nms_equals_the_brute_force_reference(metric: str) -> None:
    rng = np.random.default_rng(42)
    for trial in range(60):
        n = int(rng.integers(0, 80 if trial % 3 else 300))  # past one block of candidates, now and then
        boxes = random_boxes(rng, n)
        # Rounded scores give ties; the order among ties is the index order.
        scores = np.round(rng.uniform(0, 1, n), 1 if trial % 2 else 6)
        threshold = float(rng.choice([0.0, 0.3, 0.5, 0.7, 0.95]))
        kept = nms(boxes, scores, threshold, metric=metric)  # type: ignore[arg-type]
        assert kept.dtype == np.int64
        assert kept.tolist() == reference_nms(boxes, scores, threshold, metric)


def test_batched_nms_equals_nms_class_by_class() -> None:
    rng = np.random.default_rng(7)
    for _ in range(30):
        n = int(rng.integers(1, 60))
        boxes = random_boxes(rng, n)
        scores = rng.uniform(0, 1, n)
        classes = rng.choice([1, 2, 3, 1_000_000], n)  # a large id must not upset the offsets
        kept = batched_nms(boxes, scores, classes, 0.4)
        expected: list[int] = []
        for c in np.unique(classes):
            members = np.flatnonzero(classes == c)
            expected += [int(members[i]) for i in reference_nms(boxes[members], scores[members], 0.4)]
        assert sorted(kept.tolist()) == sorted(expected)
        assert (np.diff(scores[kept]) <= 0).all()


def test_nms_edge_cases() -> None:
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []
    assert batched_nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0), 0.5).tolist() == []
    same = np.array([[0, 0, 10, 10]] * 3, dtype=float)
    assert nms(same, np.array([0.1, 0.9, 0.5]), 0.5).tolist() == [1]
    degenerate = np.array([[5, 5, 5, 5], [5, 5, 5, 5]], dtype=float)  # zero area: overlap 0, both kept
    assert nms(degenerate, np.array([0.2, 0.3]), 0.5).tolist() == [1, 0]
    with pytest.raises(ValueError):
        nms(same, np.array([0.1]), 0.5)


def test_ios_suppresses_a_partial_box_inside_a_whole_one() -> None:
    boxes = np.array([[0, 0, 100, 100], [0, 0, 30, 100]], dtype=float)  # a tile border cut the second
    scores = np.array([0.9, 0.8])
    assert nms(boxes, scores, 0.5).tolist() == [0, 1]  # IoU 0.3: both stay
    assert nms(boxes, scores, 0.5, metric="ios").tolist() == [0]


def det(label: str, class_id: int, score: float, box: tuple[float, float, float, float]) -> Detection:
    return Detection(label, class_id, score, Box(*box))


def test_merge_detections_is_class_aware_and_sorted() -> None:
    detections = [
        det("cat", 1, 0.6, (0, 0, 10, 10)),
        det("cat", 1, 0.9, (1, 1, 11, 11)),  # same object as the first, seen from another tile
        det("dog", 2, 0.7, (0, 0, 10, 10)),  # same place, other class: kept
        det("cat", 1, 0.3, (50, 50, 60, 60)),
    ]
    merged = merge_detections(detections, iou_threshold=0.5)
    assert merged == [detections[1], detections[2], detections[3]]
    assert merge_detections(detections, max_detections=2) == [detections[1], detections[2]]
    assert merge_detections([]) == []
