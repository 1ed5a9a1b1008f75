"""How far a shadow version's answer agrees with the served one: per image, and as running figures with intervals.

Per pair of answers for the same image (:func:`compare`): boxes are matched greedily, highest served score first,
to the unmatched shadow box of the same label with the highest IoU, when that IoU is at least ``iou_threshold``
(0.5, the PASCAL VOC rule). From the matches: the shadow's precision (matched / shadow boxes) and recall
(matched / served boxes) against the served answer taken as the reference, their harmonic mean (the pair's
``agreement``, 1.0 when both found nothing), and the mean score shift (shadow score - served score) over the matches.

:class:`RunningAgreement` keeps the sums of a stream of pairs (Welford's update for the variance) so a summary costs
nothing to compute and nothing to store per sample. It reports two intervals: a normal-approximation 95 % interval
for the mean agreement (honest for the tens of samples a promotion needs, though it collapses to a point when every
pair scored the same), and a Wilson 95 % interval for the share of pairs that agreed exactly, which stays wide with
few samples even when all of them agreed. A shadow that failed or timed out is a pair with agreement 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.vision.boxes import Detection, iou_matrix

IOU_THRESHOLD = 0.5
Z_95 = 1.959963984540054  # the two-sided 95 % quantile of the standard normal


@dataclass(frozen=True, slots=True)
class PairAgreement:
    """The comparison of one shadow answer with the served answer for the same image."""

    served_boxes: int
    shadow_boxes: int
    matched: int
    score_shift: float  # mean (shadow - served) score over the matched boxes; 0 when none matched

    @property
    def precision(self) -> float:
        return self.matched / self.shadow_boxes if self.shadow_boxes else 1.0

    @property
    def recall(self) -> float:
        return self.matched / self.served_boxes if self.served_boxes else 1.0

    @property
    def agreement(self) -> float:
        """F1 of the shadow against the served answer: 1.0 for the same boxes, 0.0 for none in common."""
        total = self.served_boxes + self.shadow_boxes
        return 2 * self.matched / total if total else 1.0


def compare(
    served: Sequence[Detection], shadow: Sequence[Detection], *, iou_threshold: float = IOU_THRESHOLD
) -> PairAgreement:
    """Match ``shadow`` boxes to ``served`` ones (same label, IoU >= ``iou_threshold``) and measure the pair."""
    if not served or not shadow:
        return PairAgreement(len(served), len(shadow), 0, 0.0)
    overlaps = iou_matrix([d.box for d in served], [d.box for d in shadow])
    taken: set[int] = set()
    shifts: list[float] = []
    for i in sorted(range(len(served)), key=lambda k: -served[k].score):
        best, best_iou = -1, iou_threshold
        for j, candidate in enumerate(shadow):
            if j in taken or candidate.label != served[i].label:
                continue
            if overlaps[i, j] >= best_iou:
                best, best_iou = j, float(overlaps[i, j])
        if best >= 0:
            taken.add(best)
            shifts.append(shadow[best].score - served[i].score)
    shift = sum(shifts) / len(shifts) if shifts else 0.0
    return PairAgreement(len(served), len(shadow), len(shifts), shift)


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a proportion; ``(0, 1)`` with no samples."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


class RunningAgreement:
    """Running sums over the pairs of one shadow version (no per-sample storage)."""

    def __init__(self) -> None:
        self.samples = 0
        self.failures = 0
        self.exact = 0  # pairs whose agreement is 1.0
        self._mean = 0.0
        self._m2 = 0.0  # Welford's sum of squared deviations of the agreement
        self._precision = 0.0
        self._recall = 0.0
        self._shift = 0.0
        self._served_seconds = 0.0
        self._shadow_seconds = 0.0
        self._timed = 0  # pairs with a shadow latency (failures have none)

    def add(self, pair: PairAgreement, served_seconds: float, shadow_seconds: float) -> None:
        """Count one compared pair with the inference latency of each side."""
        self._update(pair.agreement, served_seconds)
        self.exact += pair.agreement == 1.0
        self._precision += pair.precision
        self._recall += pair.recall
        self._shift += pair.score_shift
        self._shadow_seconds += shadow_seconds
        self._timed += 1

    def add_failure(self, served_seconds: float) -> None:
        """Count a shadow run that failed or timed out: a pair that agrees on nothing."""
        self._update(0.0, served_seconds)
        self.failures += 1

    def _update(self, value: float, served_seconds: float) -> None:
        self.samples += 1
        delta = value - self._mean
        self._mean += delta / self.samples
        self._m2 += delta * (value - self._mean)
        self._served_seconds += served_seconds

    @property
    def mean(self) -> float:
        return self._mean

    def mean_interval(self, z: float = Z_95) -> tuple[float, float]:
        """Normal-approximation interval of the mean agreement, clipped to [0, 1]; ``(0, 1)`` below two samples."""
        if self.samples < 2:
            return (0.0, 1.0)
        half = z * math.sqrt(self._m2 / (self.samples - 1) / self.samples)
        return (max(0.0, self._mean - half), min(1.0, self._mean + half))

    def summary(self) -> dict[str, Any]:
        """The running figures as JSON-ready values (means over compared pairs; failures count in agreement)."""
        compared = self.samples - self.failures
        low, high = self.mean_interval()
        exact_low, exact_high = wilson_interval(self.exact, self.samples)
        return {
            "samples": self.samples,
            "failures": self.failures,
            "agreement": {"mean": self._mean, "ci95": [low, high]},
            "exact_agreement": {
                "share": self.exact / self.samples if self.samples else None,
                "ci95": [exact_low, exact_high],
            },
            "precision": self._precision / compared if compared else None,
            "recall": self._recall / compared if compared else None,
            "score_shift": self._shift / compared if compared else None,
            "latency_seconds": {
                "served": self._served_seconds / self.samples if self.samples else None,
                "shadow": self._shadow_seconds / self._timed if self._timed else None,
            },
        }
