"""The shadow agreement maths: box matching, precision/recall/F1, score shift, and the running intervals."""

from __future__ import annotations

import math

import pytest

from services.gateway.agreement import PairAgreement, RunningAgreement, compare, wilson_interval
from services.vision.results import Box, Detection


def det(label: str, score: float, xmin: float, ymin: float, xmax: float, ymax: float) -> Detection:
    return Detection(label, 1, score, Box(xmin, ymin, xmax, ymax))


SERVED = [det("ball", 0.9, 0, 0, 10, 10), det("box", 0.6, 20, 20, 40, 40)]


def test_the_same_answer_agrees_fully() -> None:
    pair = compare(SERVED, SERVED)
    assert (pair.matched, pair.precision, pair.recall, pair.agreement, pair.score_shift) == (2, 1.0, 1.0, 1.0, 0.0)


def test_boxes_match_at_iou_half_with_the_same_label_only() -> None:
    shifted = det("ball", 0.8, 0, 0, 10, 20)  # IoU 0.5 with the served ball: matched
    too_far = det("box", 0.6, 30, 30, 50, 50)  # IoU 100 / 700 with the served box: not matched
    pair = compare(SERVED, [shifted, too_far])
    assert pair.matched == 1
    assert pair.score_shift == pytest.approx(-0.1)
    assert (pair.precision, pair.recall, pair.agreement) == (0.5, 0.5, 0.5)
    relabelled = [det("cone", 0.9, 0, 0, 10, 10), det("cone", 0.6, 20, 20, 40, 40)]
    assert compare(SERVED, relabelled).matched == 0


def test_a_shadow_that_finds_more_or_less_loses_precision_or_recall() -> None:
    fewer = compare(SERVED, SERVED[:1])
    assert (fewer.precision, fewer.recall) == (1.0, 0.5)
    assert fewer.agreement == pytest.approx(2 / 3)
    more = compare(SERVED[:1], SERVED)
    assert (more.precision, more.recall) == (0.5, 1.0)


def test_each_served_box_takes_one_shadow_box() -> None:
    twin = [det("ball", 0.9, 0, 0, 10, 10), det("ball", 0.8, 0, 0, 10, 10)]
    pair = compare(twin, twin[:1])
    assert pair.matched == 1 and pair.recall == 0.5


def test_nothing_found_by_both_is_agreement() -> None:
    assert compare([], []).agreement == 1.0
    assert compare(SERVED, []).agreement == 0.0
    assert compare([], SERVED).agreement == 0.0


def test_wilson_interval() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(10, 10)
    assert high == pytest.approx(1.0) and low == pytest.approx(0.7225, abs=1e-4)  # all agreed; 10 prove little
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)


def test_running_figures_and_the_mean_interval() -> None:
    running = RunningAgreement()
    assert running.mean_interval() == (0.0, 1.0)
    values = [1.0, 0.5, 0.0, 1.0]
    for value in values:
        if value == 0.0:
            running.add_failure(served_seconds=0.01)
        else:
            matched = 2 if value == 1.0 else 1
            running.add(PairAgreement(2, 2, matched, 0.1), served_seconds=0.01, shadow_seconds=0.03)
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    low, high = running.mean_interval()
    assert running.mean == pytest.approx(mean)
    assert low == pytest.approx(max(0.0, mean - 1.959964 * sd / 2), abs=1e-5) and high == 1.0
    summary = running.summary()
    assert (summary["samples"], summary["failures"]) == (4, 1)
    assert summary["exact_agreement"]["share"] == 0.5
    assert summary["precision"] == pytest.approx((1.0 + 0.5 + 1.0) / 3)
    assert summary["score_shift"] == pytest.approx(0.1)
    assert summary["latency_seconds"] == {"served": pytest.approx(0.01), "shadow": pytest.approx(0.03)}


def test_no_samples_summarise_as_unknown() -> None:
    summary = RunningAgreement().summary()
    assert summary["samples"] == 0 and summary["precision"] is None and summary["exact_agreement"]["share"] is None
