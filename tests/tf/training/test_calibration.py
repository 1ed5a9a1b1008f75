"""Score calibration: the logistic fit, and its use in the export's post-processing."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from services.training.calibration import fit_score_calibration, peak_logits_and_correctness
from services.training.detector import DetectorConfig, build_detector
from services.training.postprocess import decode_detections
from services.vision.boxes import Box


def test_fit_recovers_a_known_logistic() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2.5, 20_000)
    correct = rng.uniform(size=logits.size) < 1 / (1 + np.exp(-(1.5 * logits + 0.7)))
    slope, intercept = fit_score_calibration(logits, correct)
    assert slope == pytest.approx(1.5, abs=0.08)
    assert intercept == pytest.approx(0.7, abs=0.08)


@pytest.mark.parametrize("correct", [np.ones(10, bool), np.zeros(10, bool), np.zeros(0, bool)])
def test_fit_falls_back_to_identity_without_both_outcomes(correct: np.ndarray) -> None:
    assert fit_score_calibration(np.linspace(-2, 2, correct.size), correct) == (1.0, 0.0)


def test_fit_refuses_a_decreasing_map() -> None:
    logits = np.linspace(-3, 3, 200)
    assert fit_score_calibration(logits, logits < 0) == (1.0, 0.0)


def test_decoding_applies_the_calibration_without_reordering() -> None:
    raw = np.full((1, 8, 8, 1 + 4), -10.0, np.float32)
    raw[0, 1, 1, 0], raw[0, 5, 5, 0], raw[0, 2, 6, 0] = 2.0, 0.5, -1.0
    plain = decode_detections(tf.constant(raw), num_classes=1, stride=4, max_detections=5, score_floor=0.01)
    tuned = decode_detections(
        tf.constant(raw), num_classes=1, stride=4, max_detections=5, score_floor=0.01, calibration=(2.0, 1.0)
    )
    z = np.array([2.0, 0.5, -1.0])
    np.testing.assert_allclose(plain["detection_scores"][0, :3].numpy(), 1 / (1 + np.exp(-z)), atol=1e-6)
    np.testing.assert_allclose(tuned["detection_scores"][0, :3].numpy(), 1 / (1 + np.exp(-(2 * z + 1))), atol=1e-6)
    np.testing.assert_array_equal(plain["detection_boxes"].numpy()[0, :3], tuned["detection_boxes"].numpy()[0, :3])


def test_config_refuses_a_non_positive_slope() -> None:
    with pytest.raises(ValueError, match="score_slope"):
        DetectorConfig(classes=("a",), score_slope=0.0)


def test_collects_one_logit_and_verdict_per_detection() -> None:
    config = DetectorConfig(classes=("a", "b"), input_size=64, max_detections=10)
    model = build_detector(config)
    images = np.random.default_rng(1).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    truth = [[(1, Box(10, 10, 30, 30))], [], [(2, Box(0, 0, 64, 64))]]
    logits, correct = peak_logits_and_correctness(model, config, images, truth, floor=0.0)
    assert logits.shape == correct.shape == (30,)
    assert correct.dtype == bool
