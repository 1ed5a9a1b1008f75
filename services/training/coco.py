"""The bridge to pycocotools: our ground truth and detections as a COCO dataset, and COCO's own numbers from it.

Boxes go in as COCO's ``[x, y, width, height]`` in pixels. Difficult objects (Pascal VOC's flag) are given
``area = -1`` rather than ``iscrowd = 1``: outside every area range, COCOeval ignores them exactly as
:mod:`services.training.evaluate` does (not counted as objects; a detection matched to one is neither right nor
wrong), with the ordinary IoU (``iscrowd`` would switch the overlap to intersection over the detection's area).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.training.image_results import ImageResult


def to_coco(results: Sequence[ImageResult], classes: Sequence[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(dataset, detections)`` in COCO's JSON form (image ids from 1, in order; category ids = label-map ids)."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    detections: list[dict[str, Any]] = []
    for image_id, result in enumerate(results, start=1):
        images.append({"id": image_id, "width": result.width, "height": result.height})
        for obj in result.truth:
            b = obj.box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": obj.class_id,
                    "bbox": [b.xmin, b.ymin, b.width, b.height],
                    "area": -1.0 if obj.difficult else b.area,
                    "iscrowd": 0,
                }
            )
        for det in result.detections:
            b = det.box
            detections.append(
                {
                    "image_id": image_id,
                    "category_id": det.class_id,
                    "bbox": [b.xmin, b.ymin, b.width, b.height],
                    "score": det.score,
                }
            )
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(classes)]
    return {"images": images, "annotations": annotations, "categories": categories}, detections


@dataclass(frozen=True, slots=True)
class CocoNumbers:
    """pycocotools' AP per class name: at IoU 0.5 (``ap50``) and averaged over IoU 0.50:0.05:0.95 (``ap``); ``nan``
    for a class without objects. Means over the classes that have objects."""

    ap50: dict[str, float]
    ap: dict[str, float]

    @property
    def map50(self) -> float:
        return _mean(self.ap50.values())

    @property
    def map(self) -> float:
        return _mean(self.ap.values())


def _mean(values: Any) -> float:
    present = [v for v in values if not np.isnan(v)]
    return float(np.mean(present)) if present else float("nan")


def coco_numbers(
    results: Sequence[ImageResult], classes: Sequence[str], *, iou_thresholds: Sequence[float] | None = None
) -> CocoNumbers:
    """Run COCOeval (bbox, every area, up to 100 detections per image) on ``results``.

    Args:
        results: Ground truth and detections per image, in pixels.
        classes: Class names in label-map order.
        iou_thresholds: COCO's ten thresholds by default; the first must be 0.5 for ``ap50``.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    dataset, detections = to_coco(results, classes)
    nan = float("nan")
    has_objects = [
        any(a["category_id"] == k + 1 and a["area"] >= 0 for a in dataset["annotations"]) for k in range(len(classes))
    ]
    if not detections:
        zeros = {name: (0.0 if has else nan) for name, has in zip(classes, has_objects, strict=True)}
        return CocoNumbers(dict(zeros), dict(zeros))
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        truth = COCO()
        truth.dataset = dataset
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(detections), iouType="bbox")
        if iou_thresholds is not None:
            evaluation.params.iouThrs = np.asarray(iou_thresholds, dtype=np.float64)
        evaluation.evaluate()
        evaluation.accumulate()
    if not np.isclose(evaluation.params.iouThrs[0], 0.5):
        raise ValueError("the first IoU threshold must be 0.5")
    # precision: [IoU thresholds, 101 recall points, classes, area ranges, max detections]; -1 = no objects.
    precision = evaluation.eval["precision"][:, :, :, 0, -1]
    ap50: dict[str, float] = {}
    ap: dict[str, float] = {}
    for k, name in enumerate(classes):
        at50 = precision[0, :, k]
        ap50[name] = float(at50.mean()) if (at50 > -1).any() else nan
        every = precision[:, :, k]
        ap[name] = float(every[every > -1].mean()) if (every > -1).any() else nan
    return CocoNumbers(ap50, ap)
