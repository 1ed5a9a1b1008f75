"""The geometry on boxes in pixel coordinates: overlap (IoU, IoS) one pair at a time or as matrices.

:class:`Box` and :class:`Detection` live with the answers they are part of (:mod:`services.vision.results`) and are
imported from here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from services.vision.results import Box, Detection

__all__ = ["Box", "Detection", "boxes_to_array", "iou", "iou_matrix", "overlap_matrix"]


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when they do not overlap or both are empty)."""
    inter_w = min(a.xmax, b.xmax) - max(a.xmin, b.xmin)
    inter_h = min(a.ymax, b.ymax) - max(a.ymin, b.ymin)
    if inter_w <= 0 or inter_h <= 0:
        return 0.0
    inter = inter_w * inter_h
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def iou_matrix(a: Sequence[Box] | np.ndarray, b: Sequence[Box] | np.ndarray) -> np.ndarray:
    """Pairwise IoU, ``[len(a), len(b)]``, of boxes given as :class:`Box` or as ``[N, 4]`` xmin, ymin, xmax, ymax."""
    return overlap_matrix(a, b, "iou")


def overlap_matrix(
    a: Sequence[Box] | np.ndarray, b: Sequence[Box] | np.ndarray, metric: Literal["iou", "ios"] = "iou"
) -> np.ndarray:
    """Pairwise overlap, ``[len(a), len(b)]``: intersection over union (``"iou"``) or over the smaller box's area
    (``"ios"``). Pairs whose denominator is 0 (empty boxes) overlap 0."""
    aa = boxes_to_array(a)
    bb = boxes_to_array(b)
    lt = np.maximum(aa[:, None, :2], bb[None, :, :2])
    rb = np.minimum(aa[:, None, 2:], bb[None, :, 2:])
    wh = np.clip(rb - lt, 0.0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = np.clip(aa[:, 2] - aa[:, 0], 0, None) * np.clip(aa[:, 3] - aa[:, 1], 0, None)
    area_b = np.clip(bb[:, 2] - bb[:, 0], 0, None) * np.clip(bb[:, 3] - bb[:, 1], 0, None)
    if metric == "iou":
        denominator = area_a[:, None] + area_b[None, :] - inter
    elif metric == "ios":
        denominator = np.minimum(area_a[:, None], area_b[None, :])
    else:
        raise ValueError(f"metric must be 'iou' or 'ios', not {metric!r}")
    out: np.ndarray = np.zeros_like(inter)
    np.divide(inter, denominator, out=out, where=denominator > 0)
    return out


def boxes_to_array(boxes: Sequence[Box] | np.ndarray) -> np.ndarray:
    """``[N, 4]`` float64 ``xmin, ymin, xmax, ymax`` from :class:`Box` objects or from an array ``[..., 4]``."""
    if isinstance(boxes, np.ndarray):
        return boxes.reshape(-1, 4).astype(np.float64, copy=False)
    return np.array([b.as_tuple() for b in boxes], dtype=np.float64).reshape(-1, 4)
