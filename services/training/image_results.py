"""What evaluation reads per image: its size, its ground-truth objects and the model's detections, in pixels
(:mod:`services.training.evaluate` and :mod:`services.training.coco` both score these)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.vision.boxes import Box


@dataclass(frozen=True, slots=True)
class LabelledBox:
    """A ground-truth object or a detection: label-map id (from 1), box in pixels, score (1 for ground truth), and
    Pascal VOC's ``difficult`` flag (ground truth only)."""

    class_id: int
    box: Box
    score: float = 1.0
    difficult: bool = False


@dataclass(frozen=True, slots=True)
class ImageResult:
    """One evaluated image: its size, its ground truth and what the model found."""

    width: int
    height: int
    truth: Sequence[LabelledBox]
    detections: Sequence[LabelledBox]
