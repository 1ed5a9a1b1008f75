"""Score calibration: a monotone map from a heat-map peak to the probability that the detection is right.

A CenterNet heat-map peak says "an object centre is here", which is close to, but not the same as, "this detection
is right at IoU 0.5 with the right class". A logistic fit on held-out detections, ``P(correct) =
sigmoid(slope * logit + intercept)``, fixes the difference (Platt scaling), so a client's ``min_score`` of 0.5
keeps detections that are right more often than not. The map is monotone (``slope > 0``): rankings, and so AP, do
not change. The fit is baked into the export's post-processing (``DetectorConfig.score_slope/score_intercept``).

Written by hand rather than with scikit-learn: two parameters by Newton's method are twenty lines, and the
dependency would be much larger than the code.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import keras
import numpy as np

from services.training.detector import DetectorConfig
from services.training.evaluate import match_detections
from services.vision.boxes import Box, Detection

log = logging.getLogger(__name__)


def fit_score_calibration(
    logits: np.ndarray, correct: np.ndarray, *, l2: float = 1e-3, iterations: int = 50
) -> tuple[float, float]:
    """Logistic regression of ``correct`` on ``logits`` (one feature): ``(slope, intercept)``.

    Falls back to ``(1, 0)`` (no calibration) when the data cannot support a fit: no correct or no wrong detection,
    or a non-positive slope.
    """
    x = np.asarray(logits, dtype=np.float64).ravel()
    y = np.asarray(correct, dtype=np.float64).ravel()
    if x.size == 0 or y.min() == y.max():
        log.warning("score calibration skipped: %d detections, all %s", x.size, "right" if y.size and y[0] else "wrong")
        return (1.0, 0.0)
    design = np.stack([x, np.ones_like(x)], axis=1)
    theta = np.array([1.0, 0.0])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(design @ theta)))
        gradient = design.T @ (p - y) + l2 * theta
        hessian = (design * (p * (1 - p))[:, None]).T @ design + l2 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.abs(step).max() < 1e-8:
            break
    slope, intercept = float(theta[0]), float(theta[1])
    if not np.isfinite([slope, intercept]).all() or slope <= 0:
        log.warning("score calibration skipped: fit gave slope %s, intercept %s", slope, intercept)
        return (1.0, 0.0)
    return (slope, intercept)


def peak_logits_and_correctness(
    model: keras.Model,
    config: DetectorConfig,
    images: np.ndarray,
    truth: Sequence[Sequence[tuple[int, Box]]],
    *,
    batch: int = 16,
    floor: float = 0.02,
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``model`` on uint8 canvases ``images`` and return every detection's heat-map logit and whether it is
    right (IoU >= 0.5, right class, one detection per object); ``truth`` per image in canvas pixels."""
    import tensorflow as tf

    from services.training.postprocess import decode_detections

    size = images.shape[1]
    logits: list[float] = []
    correct: list[bool] = []
    for start in range(0, len(images), batch):
        raw = model(tf.constant(images[start : start + batch], tf.float32), training=False)
        out = decode_detections(
            raw,
            num_classes=config.num_classes,
            stride=config.stride,
            max_detections=config.max_detections,
            score_floor=floor,
        )
        boxes, scores = out["detection_boxes"].numpy() * size, out["detection_scores"].numpy()
        classes, counts = out["detection_classes"].numpy(), out["num_detections"].numpy()
        for i in range(len(counts)):
            n = int(counts[i])
            found = [
                Detection("", int(classes[i, r]), float(scores[i, r]), Box(*boxes[i, r, [1, 0, 3, 2]].tolist()))
                for r in range(n)
            ]
            correct.extend(match_detections(truth[start + i], found))
            p = np.clip(scores[i, :n].astype(np.float64), 1e-7, 1 - 1e-7)
            logits.extend(np.log(p / (1 - p)).tolist())
    return np.array(logits), np.array(correct)
