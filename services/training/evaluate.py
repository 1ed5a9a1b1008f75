"""Detector and classifier evaluation: AP per class (two interpolations), COCO's mAP, mean IoU, a confusion matrix.

Ground truth and detections are plain Python structures in pixels, so the numbers can be checked against any other
implementation. One matching serves every number (COCO's rules):

- per image and class, detections are taken best score first (a stable sort; up to ``max_detections`` of them);
- each takes the unmatched object of its class with the highest IoU, if that IoU is at least the threshold (0.5);
  objects that are not difficult are preferred over difficult ones;
- IoU is computed on ``[x, y, width, height]`` exactly as pycocotools computes it, without VOC's "+1 pixel";
- a **difficult** object is not counted, and a detection matched to one is neither right nor wrong (VOC's rule;
  COCO's crowd regions are not used: our datasets have none).

The interpolation is then a choice: ``"all_point"`` (Pascal VOC 2010+: the area under the precision envelope at every
recall step), the default, or ``"coco101"`` (COCO: the envelope sampled at 101 recall points, with pycocotools'
``tp / (tp + fp + eps)``), which equals pycocotools' own per-class AP at IoU 0.5 exactly.

VOC's devkit differs in two details this module does not copy: it requires IoU strictly above 0.5 on "+1 pixel" boxes,
and it counts a detection whose best-overlapping object is already taken as wrong even if another free object overlaps
it enough. Both interpolations here share COCO's matching, so they differ only in interpolation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from services.training.coco import coco_numbers
from services.training.image_results import ImageResult
from services.vision.boxes import Box, Detection, iou_matrix

Interpolation = Literal["all_point", "coco101"]
INTERPOLATIONS: tuple[Interpolation, ...] = ("all_point", "coco101")
COCO_RECALL_POINTS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
"""pycocotools' recall thresholds, computed with its own expression (so the floats are the same)."""


@dataclass(slots=True)
class APReport:
    """AP at IoU 0.5 per class name (``nan`` for a class with no ground truth) and their mean over the classes that
    have ground truth."""

    per_class: dict[str, float] = field(default_factory=dict)
    mean: float = float("nan")

    def to_dict(self) -> dict[str, object]:
        return {"ap50_per_class": dict(self.per_class), "map50": self.mean}


@dataclass(frozen=True, slots=True)
class ClassMatches:
    """One class's detections over the whole set, ranked (best score first, ignored ones left out): their scores,
    whether each is right, the IoU of each right one with its object; and how many objects count."""

    scores: np.ndarray
    correct: np.ndarray
    ious: np.ndarray
    objects: int

    def precision_recall(self, *, eps: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Cumulative precision and recall down the ranking (``tp / max(tp + fp, eps)`` with ``eps = 0`` guarded)."""
        tp = np.cumsum(self.correct).astype(float)
        fp = np.cumsum(~self.correct).astype(float)
        # pycocotools adds eps to the denominator; VOC's devkit only guards against 0.
        precision = tp / (fp + tp + eps) if eps else tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        recall = tp / self.objects if self.objects else np.zeros_like(tp)
        return precision, recall


def _xywh_iou(dets: Sequence[Box], objs: Sequence[Box]) -> np.ndarray:
    """``[len(dets), len(objs)]`` IoU as pycocotools' ``bbIou`` computes it (same operations, same rounding)."""
    d = np.array([[b.xmin, b.ymin, b.width, b.height] for b in dets], dtype=np.float64).reshape(-1, 4)
    g = np.array([[b.xmin, b.ymin, b.width, b.height] for b in objs], dtype=np.float64).reshape(-1, 4)
    w = np.minimum(d[:, None, 2] + d[:, None, 0], g[None, :, 2] + g[None, :, 0]) - np.maximum(
        d[:, None, 0], g[None, :, 0]
    )
    h = np.minimum(d[:, None, 3] + d[:, None, 1], g[None, :, 3] + g[None, :, 1]) - np.maximum(
        d[:, None, 1], g[None, :, 1]
    )
    inter = w * h
    union = (d[:, None, 2] * d[:, None, 3] + g[None, :, 2] * g[None, :, 3]) - inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=(w > 0) & (h > 0))
    return np.asarray(out)


def match_class(
    results: Sequence[ImageResult], class_id: int, *, iou: float = 0.5, max_detections: int = 100
) -> ClassMatches:
    """Match one class's detections to its objects over every image (the rules are in the module's text)."""
    scores: list[np.ndarray] = []
    correct: list[np.ndarray] = []
    ignored: list[np.ndarray] = []
    ious: list[np.ndarray] = []
    objects = 0
    threshold = min(iou, 1 - 1e-10)
    for result in results:
        objs = [t for t in result.truth if t.class_id == class_id]
        objs = [objs[i] for i in np.argsort([t.difficult for t in objs], kind="mergesort")]
        skip = np.array([t.difficult for t in objs], dtype=bool)
        objects += int((~skip).sum())
        dets = [d for d in result.detections if d.class_id == class_id]
        dets = [dets[i] for i in np.argsort([-d.score for d in dets], kind="mergesort")][:max_detections]
        overlaps = _xywh_iou([d.box for d in dets], [t.box for t in objs])
        taken = np.zeros(len(objs), dtype=bool)
        hit = np.zeros(len(dets), dtype=bool)
        drop = np.zeros(len(dets), dtype=bool)
        best_iou = np.zeros(len(dets))
        for i in range(len(dets)):
            best, m = threshold, -1
            for j in range(len(objs)):
                if taken[j]:
                    continue
                if m > -1 and not skip[m] and skip[j]:
                    break  # a countable object was found; difficult ones (sorted last) never beat it
                if overlaps[i, j] < best:
                    continue
                best, m = overlaps[i, j], j
            if m > -1:
                taken[m] = True
                drop[i] = skip[m]
                hit[i] = not skip[m]
                best_iou[i] = overlaps[i, m]
        scores.append(np.array([d.score for d in dets], dtype=np.float64))
        correct.append(hit)
        ignored.append(drop)
        ious.append(best_iou)
    all_scores = np.concatenate(scores) if scores else np.zeros(0)
    order = np.argsort(-all_scores, kind="mergesort")
    keep = ~np.concatenate(ignored)[order] if scores else np.zeros(0, dtype=bool)
    rank = order[keep]
    return ClassMatches(
        scores=all_scores[rank],
        correct=np.concatenate(correct)[rank] if scores else np.zeros(0, dtype=bool),
        ious=np.concatenate(ious)[rank] if scores else np.zeros(0),
        objects=objects,
    )


def ap_from_matches(matches: ClassMatches, interpolation: Interpolation = "all_point") -> float:
    """AP of one class from its matches; ``nan`` when it has no objects."""
    if matches.objects == 0:
        return float("nan")
    if interpolation == "coco101":
        precision, recall = matches.precision_recall(eps=float(np.spacing(1)))
        envelope = precision.tolist()
        for i in range(len(envelope) - 1, 0, -1):
            if envelope[i] > envelope[i - 1]:
                envelope[i - 1] = envelope[i]
        sampled = np.zeros(len(COCO_RECALL_POINTS))
        for k, index in enumerate(np.searchsorted(recall, COCO_RECALL_POINTS, side="left")):
            if index >= len(envelope):
                break  # recall never reaches this point: precision 0 there
            sampled[k] = envelope[index]
        return float(np.mean(sampled))
    if interpolation != "all_point":
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, not {interpolation!r}")
    precision, recall = matches.precision_recall()
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def class_ap(
    results: Sequence[ImageResult],
    class_id: int,
    *,
    iou: float = 0.5,
    interpolation: Interpolation = "all_point",
    max_detections: int = 100,
) -> float:
    """AP of one class at ``iou`` with the given interpolation (``nan`` when the class has no objects)."""
    return ap_from_matches(match_class(results, class_id, iou=iou, max_detections=max_detections), interpolation)


def average_precision(
    results: Sequence[ImageResult],
    classes: Sequence[str],
    *,
    iou: float = 0.5,
    interpolation: Interpolation = "coco101",
) -> APReport:
    """AP at ``iou`` per class and the mean over the classes that have objects (``coco101`` by default: the demo's
    published numbers are pycocotools')."""
    report = APReport(
        per_class={
            name: class_ap(results, k + 1, iou=iou, interpolation=interpolation) for k, name in enumerate(classes)
        }
    )
    present = [v for v in report.per_class.values() if not np.isnan(v)]
    report.mean = float(np.mean(present)) if present else float("nan")
    return report


def _finite(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 6)


def detection_report(
    results: Sequence[ImageResult], classes: Sequence[str], *, iou: float = 0.5, min_score: float = 0.5
) -> dict[str, object]:
    """Everything the evaluate job reports for a detector, JSON-able.

    ``map50`` is VOC's all-point AP@0.5 (the headline and the gate's score); ``map50_coco101`` is ours with COCO's
    interpolation and ``map50_pycocotools`` pycocotools' own (they are equal); ``map_coco`` is COCO's mAP@[.5:.95].
    ``mean_iou``, ``precision`` and ``recall`` are at the operating point: detections scoring at least ``min_score``.
    """
    coco = coco_numbers(results, classes)
    per_class: dict[str, dict[str, object]] = {}
    all_point, coco101, matched_ious = [], [], []
    right = found = objects = 0
    for k, name in enumerate(classes):
        matches = match_class(results, k + 1, iou=iou)
        ap_all, ap_101 = ap_from_matches(matches, "all_point"), ap_from_matches(matches, "coco101")
        confident = matches.scores >= min_score
        right += int((matches.correct & confident).sum())
        found += int(confident.sum())
        objects += matches.objects
        matched_ious.extend(matches.ious[matches.correct & confident].tolist())
        precision, recall = matches.precision_recall()
        per_class[name] = {
            "objects": matches.objects,
            "detections": len(matches.scores),
            "ap50": _finite(ap_all),
            "ap50_coco101": _finite(ap_101),
            "ap50_pycocotools": _finite(coco.ap50[name]),
            "ap_coco": _finite(coco.ap[name]),
            "curve": {"precision": precision.round(5).tolist(), "recall": recall.round(5).tolist()},
        }
        if matches.objects:
            all_point.append(ap_all)
            coco101.append(ap_101)
    return {
        "kind": "detector",
        "images": len(results),
        "objects": objects,
        "iou": iou,
        "min_score": min_score,
        "map50": _finite(float(np.mean(all_point))) if all_point else None,
        "map50_coco101": _finite(float(np.mean(coco101))) if coco101 else None,
        "map50_pycocotools": _finite(coco.map50),
        "map_coco": _finite(coco.map),
        "mean_iou": round(float(np.mean(matched_ious)), 6) if matched_ious else None,
        "precision": round(right / found, 6) if found else None,
        "recall": round(right / objects, 6) if objects else None,
        "per_class": per_class,
    }


def classification_report(truth: Sequence[int], predicted: Sequence[int], classes: Sequence[str]) -> dict[str, object]:
    """Top-1 accuracy, per-class recall and the confusion matrix (rows: true class, columns: predicted; label-map
    ids from 1), JSON-able."""
    k = len(classes)
    matrix = np.zeros((k, k), dtype=np.int64)
    for t, p in zip(truth, predicted, strict=True):
        matrix[t - 1, p - 1] += 1
    total = int(matrix.sum())
    per_class = {
        name: {
            "images": int(matrix[i].sum()),
            "recall": round(float(matrix[i, i] / matrix[i].sum()), 6) if matrix[i].sum() else None,
            "precision": round(float(matrix[i, i] / matrix[:, i].sum()), 6) if matrix[:, i].sum() else None,
        }
        for i, name in enumerate(classes)
    }
    return {
        "kind": "classifier",
        "images": total,
        "accuracy": round(float(np.trace(matrix) / total), 6) if total else None,
        "per_class": per_class,
        "confusion_matrix": {"classes": list(classes), "rows_true_columns_predicted": matrix.tolist()},
    }


def match_detections(
    truth: Sequence[tuple[int, Box]], found: Sequence[Detection], *, min_iou: float = 0.5
) -> list[bool]:
    """Greedy one-to-one matching, highest score first: whether each detection (in the given order) matches a
    ground-truth object of its class with IoU >= ``min_iou`` that no higher-scoring detection took."""
    correct = [False] * len(found)
    if not found or not truth:
        return correct
    overlaps = iou_matrix([d.box for d in found], [box for _, box in truth])
    truth_classes = np.array([class_id for class_id, _ in truth])
    free = np.ones(len(truth), dtype=bool)
    for i in sorted(range(len(found)), key=lambda k: -found[k].score):
        candidates = np.where(free & (truth_classes == found[i].class_id), overlaps[i], -1.0)
        j = int(np.argmax(candidates))
        if candidates[j] >= min_iou:
            free[j] = False
            correct[i] = True
    return correct


def count_matches(
    truth: Sequence[tuple[int, Box]], found: Sequence[Detection], *, min_iou: float = 0.5
) -> tuple[int, int]:
    """``(matched objects, unmatched detections)`` by :func:`match_detections`."""
    matched = sum(match_detections(truth, found, min_iou=min_iou))
    return matched, len(found) - matched
