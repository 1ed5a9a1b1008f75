"""Scoring models on a dataset split: the evaluate job and the export gate both go through here.

A *predictor* answers for a batch of :class:`Example` s: detections in pixels of each original image (detectors), or
a predicted label-map id (classifiers), with class ids in the *dataset's* label map (a model's own labels are
matched to the dataset's by name, so a model with another class order is scored fairly; classes the dataset does not
have are dropped). Predictors exist for exports (any SavedModel with our signatures; ``detect_encoded`` when it has
one, else ``serving_default`` on letterboxed canvases) and for trained weights that are not exported yet (the same
graph the export will hold, built in memory).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from services.store.datasets.manifest import Manifest
from services.store.datasets.storage import DatasetStore
from services.training.datasets.derive import example_image
from services.training.datasets.tfrecord import iter_records
from services.training.evaluate import classification_report, detection_report
from services.training.image_results import ImageResult, LabelledBox
from services.training.letterbox import boxes_from_canvas, letterbox
from services.vision.boxes import Box
from services.vision.images import decode_image
from services.vision.letterbox import letterbox as letterbox_view
from services.vision.nms import merge_detections
from services.vision.outputs import detections_from_outputs
from services.vision.tiling import (
    DEFAULT_MAX_TILES,
    DEFAULT_MERGE_IOU,
    DEFAULT_OVERLAP,
    ModelViews,
    Views,
    plan_views,
)

log = logging.getLogger(__name__)

BATCH = 16
Progress = Callable[[int, int], None]
"""Called with (images done, images in all)."""


@dataclass(frozen=True, slots=True)
class Example:
    """One image of a split: its bytes, size, objects (``(class_id, box, difficult)``) or class id."""

    filename: str
    data: bytes
    width: int
    height: int
    objects: tuple[tuple[int, Box, bool], ...]
    class_id: int | None


def read_split(data_dir: Path, dataset: str, version: int | None, split: str) -> tuple[Manifest, list[Example]]:
    """Every image of one split of a dataset version, with its ground truth in the dataset's ids."""
    store = DatasetStore(data_dir)
    manifest = store.manifest(dataset, version)
    folder = store.path(dataset, manifest.version)
    ids = {c.name: c.id for c in manifest.classes}
    examples = []
    for shard in manifest.record_files(split):
        for raw in iter_records(folder / shard):
            image = example_image(raw)
            objects = tuple((ids[o.label], o.box, o.difficult) for o in image.objects)
            label = ids[image.labels[0]] if image.labels and not image.objects else None
            examples.append(Example(image.filename, image.encoded(), image.width, image.height, objects, label))
    return manifest, examples


def signature_labels(loaded: Any) -> list[str] | None:
    """A SavedModel's class names from its ``labels`` signature, in either form of the contract (None without)."""
    signature = loaded.signatures.get("labels")
    if signature is None:
        return None
    inputs = signature.structured_input_signature[1]
    if inputs:
        out = signature(**{name: tf.constant([0], tf.int32) for name in inputs})
        names = out["names"].numpy()[0]
    else:
        names = signature()["names"].numpy()
    return [n.decode() for n in names]


def _id_map(model_classes: Sequence[str], dataset_classes_: Sequence[str]) -> dict[int, int]:
    """Model label-map id -> dataset label-map id, by name."""
    wanted = {name: i + 1 for i, name in enumerate(dataset_classes_)}
    mapping = {i + 1: wanted[name] for i, name in enumerate(model_classes) if name in wanted}
    missing = sorted(set(dataset_classes_) - set(model_classes))
    if missing:
        log.warning("the model does not know the dataset's classes %s: their AP will be 0", missing)
    return mapping


DetectorPredictor = Callable[[Sequence[Example]], list[list[LabelledBox]]]
ClassifierPredictor = Callable[[Sequence[Example]], list[int]]


def _detections(
    out: dict[str, np.ndarray], index: int, width: int, height: int, ids: dict[int, int]
) -> list[LabelledBox]:
    found = []
    for row in range(int(out["num_detections"][index])):
        model_id = int(out["detection_classes"][index, row])
        if model_id not in ids:
            continue
        ymin, xmin, ymax, xmax = (float(v) for v in out["detection_boxes"][index, row])
        box = Box(xmin * width, ymin * height, xmax * width, ymax * height)
        found.append(LabelledBox(ids[model_id], box, float(out["detection_scores"][index, row])))
    return found


def encoded_detector(detect_encoded: Any, model_classes: Sequence[str], classes: Sequence[str]) -> DetectorPredictor:
    """A predictor over a ``detect_encoded`` function (boxes come back normalised to each original image)."""
    ids = _id_map(model_classes, classes)

    def predict(batch: Sequence[Example]) -> list[list[LabelledBox]]:
        out = {k: v.numpy() for k, v in detect_encoded(encoded=tf.constant([e.data for e in batch])).items()}
        return [_detections(out, i, e.width, e.height, ids) for i, e in enumerate(batch)]

    return predict


def canvas_detector(serve: Any, size: int, model_classes: Sequence[str], classes: Sequence[str]) -> DetectorPredictor:
    """A predictor over ``serving_default`` (images letterboxed here, boxes mapped back)."""
    ids = _id_map(model_classes, classes)

    def predict(batch: Sequence[Example]) -> list[list[LabelledBox]]:
        canvases, scales = [], []
        for e in batch:
            canvas, scale = letterbox(tf.io.decode_image(e.data, channels=3, expand_animations=False), size)
            canvases.append(canvas)
            scales.append(scale)
        out = {k: v.numpy() for k, v in serve(images=tf.stack(canvases)).items()}
        for i, e in enumerate(batch):
            back = boxes_from_canvas(out["detection_boxes"][i], e.height, e.width, scales[i], size)
            out["detection_boxes"][i] = back.numpy()
        return [_detections(out, i, e.width, e.height, ids) for i, e in enumerate(batch)]

    return predict


_NO_LIMIT = 2**62


def view_detector(
    serve: Any,
    size: int,
    model_classes: Sequence[str],
    classes: Sequence[str],
    *,
    views: Views,
    overlap: float = DEFAULT_OVERLAP,
    max_tiles: int = DEFAULT_MAX_TILES,
    merge_iou: float = DEFAULT_MERGE_IOU,
) -> DetectorPredictor:
    """A predictor that sees each image as the gateway does with ``tile=auto``: the same decode
    (:func:`services.vision.images.decode_image`), the same views (:func:`services.vision.tiling.plan_views` with the
    model's ``views``, the gateway's default overlap and tile count), the same letterbox per view, the same mapping
    back to original pixels and the same merge (:func:`services.vision.nms.merge_detections`) over
    ``serving_default``. Its detections are the gateway's answers for the image, before ``min_score``."""
    ids = _id_map(model_classes, classes)
    names = {i + 1: name for i, name in enumerate(model_classes)}

    def one(example: Example) -> list[LabelledBox]:
        decoded = decode_image(example.data, content_type=None, max_bytes=_NO_LIMIT, max_pixels=_NO_LIMIT)
        plan = plan_views(
            decoded.width, decoded.height, size, "auto", views=views, overlap=overlap, max_tiles=max_tiles
        )
        placed = [letterbox_view(decoded, size, region=view.region) for view in plan]
        found = []
        for start in range(0, len(placed), BATCH):
            chunk = placed[start : start + BATCH]
            out = {k: v.numpy() for k, v in serve(images=tf.constant(np.stack([c for c, _ in chunk]))).items()}
            for i, (_, box) in enumerate(chunk):
                found.extend(
                    detections_from_outputs(
                        out["detection_boxes"][i],
                        out["detection_scores"][i],
                        out["detection_classes"][i],
                        out["num_detections"][i],
                        box,
                        names,
                    )
                )
        if len(placed) > 1:
            found = merge_detections(found, iou_threshold=merge_iou)
        return [LabelledBox(ids[d.class_id], d.box, d.score) for d in found if d.class_id in ids]

    def predict(batch: Sequence[Example]) -> list[list[LabelledBox]]:
        return [one(e) for e in batch]

    return predict


def views_used(examples: Sequence[Example], size: int, views: Views) -> dict[str, Any]:
    """What the report says about the views: the model's ``views`` and how many views the images took."""
    counts = [
        len(plan_views(e.width, e.height, size, "auto", views=views, max_tiles=DEFAULT_MAX_TILES)) for e in examples
    ]
    return {
        "views": views,
        "how": "gateway plan (tile=auto): tiles and the whole image, merged"
        if views == "tiles"
        else "the whole image, letterboxed",
        "overlap": DEFAULT_OVERLAP if views == "tiles" else None,
        "merge_iou": DEFAULT_MERGE_IOU if views == "tiles" else None,
        "views_per_image": round(sum(counts) / len(counts), 2) if counts else 0.0,
        "tiled_images": sum(c > 1 for c in counts),
    }


def version_views(folder: Path) -> Views:
    """How a published or staged version sees an image (its ``assets.extra/spotter.json``; ``whole`` without)."""
    path = folder / "assets.extra" / "spotter.json"
    if not path.is_file():
        return "whole"
    return ModelViews.from_metadata(json.loads(path.read_text(encoding="utf-8"))).views


def classifier(serve: Any, size: int, model_classes: Sequence[str], classes: Sequence[str]) -> ClassifierPredictor:
    """A predictor over a classifier's ``serving_default`` (``images`` uint8 canvases -> ``probabilities``)."""
    ids = _id_map(model_classes, classes)

    def predict(batch: Sequence[Example]) -> list[int]:
        canvases = [letterbox(tf.io.decode_image(e.data, channels=3, expand_animations=False), size)[0] for e in batch]
        probabilities = serve(images=tf.stack(canvases))["probabilities"].numpy()
        ranked = np.argsort(-probabilities, axis=1)
        # The best class the dataset knows (0 if the model knows none of them).
        return [next((ids[int(k) + 1] for k in row if int(k) + 1 in ids), 0) for row in ranked]

    return predict


def served_size(loaded: Any) -> int:
    """The canvas side S of a SavedModel's ``serving_default`` (0 when open)."""
    spec = next(iter(loaded.signatures["serving_default"].structured_input_signature[1].values()))
    return int(spec.shape[1] or 0)


def export_predictor(
    loaded: Any, classes: Sequence[str], views: Views = "whole"
) -> tuple[str, DetectorPredictor | ClassifierPredictor]:
    """``(kind, predictor)`` for a loaded SavedModel, its kind read from ``serving_default``'s outputs; a ``tiles``
    detector is seen through the gateway's views (:func:`view_detector`)."""
    serve = loaded.signatures["serving_default"]
    outputs = serve.structured_outputs
    size = served_size(loaded)
    model_classes = signature_labels(loaded) or list(classes)
    if "probabilities" in outputs:
        return "classifier", classifier(serve, size, model_classes, classes)
    if "detection_boxes" not in outputs:
        raise ValueError(f"serving_default answers {sorted(outputs)}: neither a detector nor a classifier")
    if views == "tiles" and size:
        return "detector", view_detector(serve, size, model_classes, classes, views=views)
    if "detect_encoded" in loaded.signatures:
        return "detector", encoded_detector(loaded.signatures["detect_encoded"], model_classes, classes)
    if not size:
        raise ValueError("the detector's input size is open and it has no detect_encoded signature")
    return "detector", canvas_detector(serve, size, model_classes, classes)


def score_detector(
    predict: DetectorPredictor,
    examples: Sequence[Example],
    classes: Sequence[str],
    *,
    min_score: float = 0.5,
    progress: Progress | None = None,
) -> tuple[dict[str, Any], list[ImageResult]]:
    """The detection report (see :func:`services.training.evaluate.detection_report`) and the per-image results."""
    results: list[ImageResult] = []
    for start in range(0, len(examples), BATCH):
        batch = examples[start : start + BATCH]
        for example, found in zip(batch, predict(batch), strict=True):
            truth = [LabelledBox(c, box, difficult=hard) for c, box, hard in example.objects]
            results.append(ImageResult(example.width, example.height, truth, found))
        if progress is not None:
            progress(len(results), len(examples))
    return detection_report(results, classes, min_score=min_score), results


def image_detections(
    examples: Sequence[Example], results: Sequence[ImageResult], classes: Sequence[str]
) -> list[dict[str, Any]]:
    """Per image, what the model found, in the gateway's answer form (``label``, ``class_id``, ``score``, ``box``
    in original pixels): the evaluate job's ``detections.json``, to set beside what the gateway serves."""
    return [
        {
            "filename": e.filename,
            "width": r.width,
            "height": r.height,
            "detections": [
                {
                    "label": classes[d.class_id - 1],
                    "class_id": d.class_id,
                    "score": round(d.score, 6),
                    "box": {"xmin": d.box.xmin, "ymin": d.box.ymin, "xmax": d.box.xmax, "ymax": d.box.ymax},
                }
                for d in r.detections
            ],
        }
        for e, r in zip(examples, results, strict=True)
    ]


def score_classifier(
    predict: ClassifierPredictor,
    examples: Sequence[Example],
    classes: Sequence[str],
    *,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The classification report (accuracy, confusion matrix) of ``predict`` on labelled examples."""
    labelled = [e for e in examples if e.class_id is not None]
    predicted: list[int] = []
    for start in range(0, len(labelled), BATCH):
        predicted.extend(predict(labelled[start : start + BATCH]))
        if progress is not None:
            progress(len(predicted), len(labelled))
    truth = [int(e.class_id) for e in labelled if e.class_id is not None]
    # A prediction outside the dataset's classes (0) counts as wrong: give it a column the matrix does not have.
    usable = [(t, p) for t, p in zip(truth, predicted, strict=True) if p > 0]
    report = classification_report([t for t, _ in usable], [p for _, p in usable], classes)
    if len(usable) != len(truth):
        report["accuracy"] = round(sum(t == p for t, p in usable) / len(truth), 6) if truth else None
        report["unknown_predictions"] = len(truth) - len(usable)
    return report


def headline(report: dict[str, Any]) -> float:
    """The one number a report is judged by: mAP@0.5 (all-point) for detectors, top-1 accuracy for classifiers."""
    value = report.get("map50") if report.get("kind") == "detector" else report.get("accuracy")
    return float(value) if value is not None else 0.0
