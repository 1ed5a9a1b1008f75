"""Evaluation: AP per class in both interpolations (by hand, and exactly equal to pycocotools in ``coco101`` mode on
the demo model's real detections), difficult objects, the detection and classification reports, greedy matching."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from services.training.coco import coco_numbers
from services.training.evaluate import (
    average_precision,
    class_ap,
    classification_report,
    count_matches,
    detection_report,
)
from services.training.image_results import ImageResult, LabelledBox
from services.training.inputs import scene_arrays
from services.training.synthetic import CLASSES as DEMO_CLASSES
from services.vision.boxes import Box, Detection

DEMO = Path(__file__).resolve().parents[3] / "models" / "demo" / "1"

CLASSES = ("a", "b", "c")


def _truth() -> list[ImageResult]:
    return [
        ImageResult(100, 100, [LabelledBox(1, Box(10, 10, 30, 30)), LabelledBox(2, Box(50, 50, 80, 70))], []),
        ImageResult(100, 100, [LabelledBox(1, Box(60, 10, 90, 40))], []),
    ]


def _with(results: list[ImageResult], detections: list[list[LabelledBox]]) -> list[ImageResult]:
    return [ImageResult(r.width, r.height, r.truth, d) for r, d in zip(results, detections, strict=True)]


def test_perfect_detections_score_one_and_absent_classes_are_nan() -> None:
    truth = _truth()
    report = average_precision(
        _with(truth, [[LabelledBox(o.class_id, o.box, 0.9) for o in r.truth] for r in truth]), CLASSES
    )
    assert report.per_class["a"] == pytest.approx(1.0)
    assert report.per_class["b"] == pytest.approx(1.0)
    assert math.isnan(report.per_class["c"])
    assert report.mean == pytest.approx(1.0)


def test_wrong_class_and_poor_overlap_do_not_count() -> None:
    truth = _truth()
    detections = [
        [LabelledBox(2, Box(10, 10, 30, 30), 0.9), LabelledBox(2, Box(50, 50, 80, 70), 0.8)],  # a labelled b; b right
        [LabelledBox(1, Box(75, 25, 100, 55), 0.9)],  # IoU < 0.5
    ]
    report = average_precision(_with(truth, detections), CLASSES)
    assert report.per_class["a"] == pytest.approx(0.0)
    # b: its true positive ranks below a false positive of the same class.
    assert 0.4 < report.per_class["b"] < 0.6


def test_no_detections_at_all() -> None:
    report = average_precision(_truth(), CLASSES)
    assert report.per_class["a"] == 0.0 and report.mean == 0.0


def test_count_matches_is_one_to_one_by_score() -> None:
    truth = [(1, Box(0, 0, 10, 10)), (2, Box(20, 20, 30, 30))]
    found = [
        Detection("a", 1, 0.9, Box(0, 0, 10, 10)),
        Detection("a", 1, 0.8, Box(1, 0, 10, 10)),  # a duplicate: unmatched
        Detection("a", 1, 0.7, Box(20, 20, 30, 30)),  # wrong class
    ]
    assert count_matches(truth, found) == (1, 2)
    assert count_matches([], found) == (0, 3)
    assert count_matches(truth, []) == (0, 0)


def _ranked_case() -> list[ImageResult]:
    """Class 1: three objects over two images; detections ranked right (0.9), wrong (0.8), right (0.7), wrong
    (0.6); the third object is never found. Precision 1, 1/2, 2/3, 2/4 at recall 1/3, 1/3, 2/3, 2/3."""
    a, b, c = Box(0, 0, 10, 10), Box(20, 20, 30, 30), Box(50, 50, 60, 60)
    return [
        ImageResult(
            100,
            100,
            [LabelledBox(1, a), LabelledBox(1, b)],
            [
                LabelledBox(1, a, 0.9),
                LabelledBox(1, Box(70, 70, 80, 80), 0.8),
                LabelledBox(1, Box(21, 20, 31, 30), 0.7),
            ],
        ),
        ImageResult(100, 100, [LabelledBox(1, c)], [LabelledBox(1, Box(0, 80, 10, 90), 0.6)]),
    ]


def test_all_point_ap_by_hand() -> None:
    # Envelope: 1 up to recall 1/3, 2/3 up to recall 2/3, nothing beyond: 1/3 * 1 + 1/3 * 2/3 = 5/9.
    assert class_ap(_ranked_case(), 1) == pytest.approx(5 / 9, abs=1e-12)
    # coco101: 34 recall points (0.00-0.33) at 1, 33 (0.34-0.66) at 2/3, the rest 0.
    assert class_ap(_ranked_case(), 1, interpolation="coco101") == pytest.approx(56 / 101, abs=1e-9)


def test_all_point_ap_of_a_perfect_and_an_inverted_ranking() -> None:
    boxes = [Box(10 * i, 0, 10 * i + 8, 8) for i in range(4)]
    truth = [LabelledBox(1, b) for b in boxes[:2]]
    perfect = [LabelledBox(1, boxes[0], 0.9), LabelledBox(1, boxes[1], 0.8), LabelledBox(1, boxes[2], 0.1)]
    assert class_ap([ImageResult(50, 10, truth, perfect)], 1) == 1.0
    # Wrong, wrong, right, right: precision 1/3 at recall 1/2, 2/4 at recall 1 -> envelope 1/2 all the way.
    inverted = [
        LabelledBox(1, boxes[2], 0.9),
        LabelledBox(1, boxes[3], 0.8),
        LabelledBox(1, boxes[0], 0.7),
        LabelledBox(1, boxes[1], 0.6),
    ]
    assert class_ap([ImageResult(50, 10, truth, inverted)], 1) == pytest.approx(0.5, abs=1e-12)


def test_a_duplicate_is_wrong_and_a_difficult_object_is_ignored() -> None:
    a, hard = Box(0, 0, 10, 10), Box(40, 40, 50, 50)
    truth = [LabelledBox(1, a), LabelledBox(1, hard, difficult=True)]
    dets = [LabelledBox(1, hard, 0.95), LabelledBox(1, a, 0.9), LabelledBox(1, a, 0.8)]
    # The difficult object's detection is neither right nor wrong; the duplicate of a is wrong; one object counts.
    assert class_ap([ImageResult(60, 60, truth, dets)], 1) == 1.0
    report = detection_report([ImageResult(60, 60, truth, dets)], ["a"], min_score=0.5)
    assert report["objects"] == 1 and report["precision"] == 0.5 and report["recall"] == 1.0
    # Only difficult objects: the class has nothing to find.
    assert math.isnan(class_ap([ImageResult(60, 60, truth[1:], dets[:1])], 1))


def _random_case(seed: int) -> list[ImageResult]:
    """Jittered, duplicated, mislabelled and invented boxes with tied scores and difficult objects."""
    rng = np.random.default_rng(seed)
    results = []
    for _ in range(25):
        truth, dets = [], []
        for _ in range(int(rng.integers(0, 6))):
            x, y, s = (float(v) for v in rng.uniform(0, 80, 3))
            box = Box(x, y, x + 5 + s / 4, y + 5 + s / 3)
            truth.append(LabelledBox(int(rng.integers(1, 4)), box, difficult=bool(rng.random() < 0.15)))
            for _ in range(int(rng.integers(0, 3))):
                j = rng.normal(0, 2.0, 4)
                moved = Box(box.xmin + j[0], box.ymin + j[1], box.xmax + j[2], box.ymax + j[3])
                label = truth[-1].class_id if rng.random() < 0.8 else int(rng.integers(1, 4))
                dets.append(LabelledBox(label, moved, float(np.round(rng.random(), 1))))  # rounded: ties
        for _ in range(int(rng.integers(0, 3))):
            x, y = (float(v) for v in rng.uniform(0, 90, 2))
            dets.append(LabelledBox(int(rng.integers(1, 4)), Box(x, y, x + 8, y + 8), float(rng.random())))
        results.append(ImageResult(100, 100, truth, dets))
    return results


@pytest.mark.parametrize("seed", range(6))
def test_coco101_equals_pycocotools_exactly_on_random_cases(seed: int) -> None:
    results = _random_case(seed)
    coco = coco_numbers(results, CLASSES)
    for k, name in enumerate(CLASSES):
        ours = class_ap(results, k + 1, interpolation="coco101")
        assert (math.isnan(ours) and math.isnan(coco.ap50[name])) or ours == coco.ap50[name], (name, ours, coco.ap50)


@pytest.fixture(scope="module")
def demo_results() -> list[ImageResult]:
    """The committed demo model's real detections (every one down to its score floor) on 40 fresh scenes; every
    fifth object is marked difficult."""
    arrays = scene_arrays(77, 40)
    serve = tf.saved_model.load(str(DEMO)).signatures["serving_default"]
    out = {k: v.numpy() for k, v in serve(images=tf.constant(arrays.images)).items()}
    size = arrays.images.shape[1]
    results, count = [], 0
    for i in range(len(arrays)):
        truth = []
        for b, c in zip(arrays.boxes[i], arrays.classes[i], strict=True):
            if c > 0:
                box = Box(b[1] * size, b[0] * size, b[3] * size, b[2] * size)
                truth.append(LabelledBox(int(c), box, difficult=count % 5 == 4))
                count += 1
        dets = [
            LabelledBox(
                int(out["detection_classes"][i, r]),
                Box(*(float(v) * size for v in out["detection_boxes"][i, r, [1, 0, 3, 2]])),
                float(out["detection_scores"][i, r]),
            )
            for r in range(int(out["num_detections"][i]))
        ]
        results.append(ImageResult(size, size, truth, dets))
    return results


def test_coco101_equals_pycocotools_exactly_on_the_demo_models_detections(demo_results: list[ImageResult]) -> None:
    coco = coco_numbers(demo_results, DEMO_CLASSES)
    for k, name in enumerate(DEMO_CLASSES):
        assert class_ap(demo_results, k + 1, interpolation="coco101") == coco.ap50[name], name
    report = detection_report(demo_results, DEMO_CLASSES)
    assert report["map50_coco101"] == report["map50_pycocotools"]
    # The demo is good: both interpolations are high, and all-point is never below the 101-point sampling by much.
    assert report["map50"] > 0.9 and abs(report["map50"] - report["map50_coco101"]) < 0.02
    assert 0 < report["map_coco"] < report["map50"] and 0.5 < report["mean_iou"] <= 1.0


def test_classification_report() -> None:
    report = classification_report([1, 1, 2, 2, 2], [1, 2, 2, 2, 1], ["road", "not-road"])
    assert report["accuracy"] == 0.6
    assert report["confusion_matrix"]["rows_true_columns_predicted"] == [[1, 1], [1, 2]]
    assert report["per_class"]["not-road"] == {"images": 3, "recall": round(2 / 3, 6), "precision": round(2 / 3, 6)}
