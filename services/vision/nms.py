"""Non-maximum suppression, vectorised in NumPy, and the merge of detections from several views of one image.

Greedy NMS: take the highest-scoring box, drop every remaining box that overlaps it by more than the threshold,
repeat. It runs on blocks of candidates (see :func:`nms`), so the cost is ``O(N * kept)`` overlaps computed by NumPy
and a Python step per candidate that is one row-OR; no Python loop over box pairs. Ties in score keep the earlier
index first.

Overlap is IoU by default. ``metric="ios"`` (intersection over the smaller box) also suppresses a partial box that
lies inside a larger one, which is what a tile border leaves behind when it cuts an object that another view saw
whole; it also merges genuinely nested objects of one class, so it is not the default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from services.vision.boxes import Detection, boxes_to_array, overlap_matrix

OverlapMetric = Literal["iou", "ios"]

# Candidates settled per step; the cross-overlap matrix is _BLOCK x N float64 (about 5 MB for N = 10000).
_BLOCK = 64


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, *, metric: OverlapMetric = "iou") -> np.ndarray:
    """Greedy non-maximum suppression.

    Args:
        boxes: ``[N, 4]`` ``xmin, ymin, xmax, ymax``.
        scores: ``[N]``.
        iou_threshold: A box is dropped when its overlap with a kept, higher-scoring box is above this.
        metric: ``"iou"`` (intersection over union) or ``"ios"`` (intersection over the smaller box's area).

    Returns:
        int64 indices of the kept boxes, by score descending.
    """
    b = boxes_to_array(np.asarray(boxes, dtype=np.float64))
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if b.shape[0] != s.shape[0]:
        raise ValueError(f"{b.shape[0]} boxes but {s.shape[0]} scores")
    if metric not in ("iou", "ios"):
        raise ValueError(f"metric must be 'iou' or 'ios', not {metric!r}")
    order = np.argsort(-s, kind="stable")
    ranked = b[order]
    n = ranked.shape[0]
    suppressed = np.zeros(n, dtype=bool)
    keep: list[int] = []
    # Blocks of candidates in score order: one overlap matrix settles the greedy choice inside a block (a cheap
    # row-OR per kept box), a second lets the block's kept boxes suppress every later box at once. Same result as
    # one box at a time, with a few NumPy calls per block instead of per box.
    for start in range(0, n, _BLOCK):
        stop = min(n, start + _BLOCK)
        block = ranked[start:stop]
        inside = np.triu(overlap_matrix(block, block, metric) > iou_threshold, k=1)
        dropped = suppressed[start:stop].copy()
        kept_here: list[int] = []
        for i in range(stop - start):
            if not dropped[i]:
                kept_here.append(i)
                dropped |= inside[i]
        keep.extend(start + i for i in kept_here)
        later = stop + np.flatnonzero(~suppressed[stop:])
        if kept_here and later.size:
            hit = (overlap_matrix(block[kept_here], ranked[later], metric) > iou_threshold).any(axis=0)
            suppressed[later[hit]] = True
    return order[np.asarray(keep, dtype=np.int64)]


def batched_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    iou_threshold: float,
    *,
    metric: OverlapMetric = "iou",
) -> np.ndarray:
    """NMS within each class: boxes of different classes never suppress each other.

    One pass over all boxes: each class is shifted to its own region of the plane, so no two classes overlap.

    Returns:
        int64 indices of the kept boxes, by score descending.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    c = np.asarray(classes).reshape(-1)
    if b.shape[0] != c.shape[0]:
        raise ValueError(f"{b.shape[0]} boxes but {c.shape[0]} classes")
    if not b.shape[0]:
        return np.zeros(0, dtype=np.int64)
    # Offset by the class's rank (not its id, which may be large) times more than the whole extent of the boxes.
    _, rank = np.unique(c, return_inverse=True)
    low, high = float(b.min()), float(b.max())
    shifted = b - low + (rank.reshape(-1, 1) * (high - low + 1.0))
    return nms(shifted, scores, iou_threshold, metric=metric)


def merge_detections(
    detections: Sequence[Detection],
    *,
    iou_threshold: float = 0.5,
    max_detections: int | None = None,
    metric: OverlapMetric = "iou",
) -> list[Detection]:
    """Merge detections from several views of one image (tiles and the whole image), class by class.

    Args:
        detections: Detections in original-image pixels, from any number of views.
        iou_threshold: Overlap above which the lower-scoring of two same-class detections is dropped.
        max_detections: Keep at most this many (the highest-scoring); all when ``None``.
        metric: ``"iou"`` or ``"ios"``, see the module docstring.

    Returns:
        The kept detections, by score descending.
    """
    if not detections:
        return []
    boxes = boxes_to_array([d.box for d in detections])
    scores = np.array([d.score for d in detections], dtype=np.float64)
    classes = np.array([d.class_id for d in detections], dtype=np.int64)
    kept = batched_nms(boxes, scores, classes, iou_threshold, metric=metric)
    if max_detections is not None:
        kept = kept[: max(0, max_detections)]
    return [detections[int(i)] for i in kept]
