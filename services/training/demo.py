"""The demo model's recipe: train the detector on generated scenes, export it as ``models/demo/1/``, check it.

``spotter demo-model --output models/demo`` (``make demo-model``) runs :func:`make_demo_model`. Everything is seeded
(scenes, NumPy, TensorFlow, Keras, augmentation), so the command reproduces the model as far as TensorFlow's CPU
kernels allow. The export is evaluated before it is published: AP@0.5 on held-out scenes, the example images, and
in-process throughput; the numbers go into ``models/demo/README.md``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from PIL import Image

from services.training.calibration import fit_score_calibration, peak_logits_and_correctness
from services.training.demo_examples import ExampleCheck, ExampleSpec, check_examples, write_examples
from services.training.demo_readme import write_readme
from services.training.detector import DetectorConfig, build_detector
from services.training.evaluate import APReport, average_precision, count_matches
from services.training.export import METADATA_FILE, export_detector, export_staging, publish
from services.training.image_results import ImageResult, LabelledBox
from services.training.inputs import scene_arrays, synthetic_dataset
from services.training.synthetic import CLASSES
from services.training.train import TrainConfig, fit_detector, seed_everything
from services.vision.boxes import Box, Detection
from services.vision.letterbox import letterbox as letterbox_pil
from services.vision.nms import merge_detections
from services.vision.tiling import plan_views

log = logging.getLogger(__name__)

MIN_SCORE = 0.5
"""The gateway's default score threshold: the examples and the precision/recall figures are checked at it."""


@dataclass(frozen=True, slots=True)
class DemoRecipe:
    """How the demo model is made. ``QUICK`` is the few-minute version for a first export and for smoke runs."""

    train_seed: int = 1
    train_scenes: int = 4000
    eval_seed: int = 3
    eval_scenes: int = 300
    calibration_seed: int = 2
    calibration_scenes: int = 300
    # Trained on 192 px crops of 320 px scenes with 14-40 px objects, at their native scale: served tiled on
    # anything larger than one view (its spotter.json says views "tiles"; tile=auto follows it).
    detector: DetectorConfig = field(
        default_factory=lambda: DetectorConfig(
            classes=CLASSES, views="tiles", crop_size=192, object_size_px=(14.0, 40.0)
        )
    )
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=20, steps_per_epoch=200, batch_size=16, train_size=192, seed=1)
    )
    examples: ExampleSpec = field(default_factory=ExampleSpec)
    speed_seconds: float = 3.0
    """How long each batch size's throughput is measured."""


QUICK = DemoRecipe(
    train_scenes=800,
    eval_scenes=100,
    calibration_scenes=100,
    train=TrainConfig(epochs=3, steps_per_epoch=100, batch_size=16, train_size=192, warmup_steps=50, seed=1),
)


@dataclass(slots=True)
class DemoResult:
    """What the recipe measured (also written to the README and to the export's ``assets.extra/spotter.json``)."""

    version_dir: Path
    ap: APReport
    precision: float
    recall: float
    examples: list[ExampleCheck]
    generate_seconds: float
    train_seconds: float
    train_images_per_second: float
    final_loss: float
    size_bytes: int
    inference_images_per_second: dict[int, float]

    def summary(self) -> dict[str, Any]:
        return {
            **self.ap.to_dict(),
            "precision_at_0.5": self.precision,
            "recall_at_0.5": self.recall,
            "examples": [asdict(c) for c in self.examples],
            "generate_seconds": round(self.generate_seconds, 1),
            "train_seconds": round(self.train_seconds, 1),
            "train_images_per_second": round(self.train_images_per_second, 1),
            "final_loss": round(self.final_loss, 4),
            "size_bytes": self.size_bytes,
            "inference_images_per_second": {str(k): round(v, 1) for k, v in self.inference_images_per_second.items()},
        }


def make_demo_model(output: Path, recipe: DemoRecipe | None = None) -> DemoResult:
    """Train, export, evaluate and publish the demo model as ``output/1/`` (replacing it), with its examples and
    README beside it."""
    recipe = recipe or DemoRecipe()
    seed_everything(recipe.train.seed)
    started = time.monotonic()
    arrays = scene_arrays(recipe.train_seed, recipe.train_scenes)
    generate_seconds = time.monotonic() - started
    log.info("generated %d training scenes in %.0f s", len(arrays), generate_seconds)
    det, train = recipe.detector, recipe.train
    data = synthetic_dataset(
        arrays,
        batch_size=train.batch_size,
        stride=det.stride,
        num_classes=det.num_classes,
        seed=train.seed,
        train_size=train.train_size,
    )
    model = build_detector(det)
    started = time.monotonic()
    history = fit_detector(model, det, train, data)
    train_seconds = time.monotonic() - started
    del arrays, data
    det = calibrate_scores(model, det, recipe)
    made = replace(recipe, detector=det)  # what was made: the recipe with the fitted calibration

    with export_staging(output) as staging:  # a failed run publishes nothing and leaves nothing
        export_detector(model, det, staging, model_name=output.name)
        loaded = tf.saved_model.load(str(staging))
        ap, precision, recall = evaluate_export(loaded, recipe)
        scenes = write_examples(output / "examples", recipe.examples)
        checks = check_examples(output / "examples", scenes, lambda path: detect_example(loaded, det.input_size, path))
        speed = inference_speed(loaded, det.input_size, seconds=recipe.speed_seconds)
        result = DemoResult(
            version_dir=output / "1",
            ap=ap,
            precision=precision,
            recall=recall,
            examples=checks,
            generate_seconds=generate_seconds,
            train_seconds=train_seconds,
            train_images_per_second=train.total_steps * train.batch_size / train_seconds,
            final_loss=float(history.history["loss"][-1]),
            size_bytes=sum(p.stat().st_size for p in staging.rglob("*") if p.is_file()),
            inference_images_per_second=speed,
        )
        metadata_path = staging / "assets.extra" / METADATA_FILE
        metadata = json.loads(metadata_path.read_text())
        metadata["demo"] = {"recipe": _recipe_dict(made), "results": result.summary()}
        metadata_path.write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
        publish(staging, output, version=1, replace=True)
    write_readme(output / "README.md", recipe=_recipe_dict(made), results=result.summary())
    log.info("demo model: mAP@0.5 %.3f %s", ap.mean, {k: round(v, 3) for k, v in ap.per_class.items()})
    return result


def calibrate_scores(model: Any, det: DetectorConfig, recipe: DemoRecipe) -> DetectorConfig:
    """``det`` with the score calibration fitted on ``recipe.calibration_scenes`` scenes of their own seed."""
    arrays = scene_arrays(recipe.calibration_seed, recipe.calibration_scenes)
    size = det.input_size
    truth = [
        [
            (int(c), Box(b[1] * size, b[0] * size, b[3] * size, b[2] * size))
            for b, c in zip(boxes, classes, strict=True)
            if c > 0
        ]
        for boxes, classes in zip(arrays.boxes, arrays.classes, strict=True)
    ]
    logits, correct = peak_logits_and_correctness(model, det, arrays.images, truth)
    slope, intercept = fit_score_calibration(logits, correct)
    log.info(
        "score calibration on %d detections (%d right): slope %.3f, intercept %.3f (raw 0.5 -> %.3f)",
        len(logits),
        int(correct.sum()),
        slope,
        intercept,
        1 / (1 + np.exp(-intercept)),
    )
    return replace(det, score_slope=slope, score_intercept=intercept)


def _recipe_dict(recipe: DemoRecipe) -> dict[str, Any]:
    data = asdict(recipe)
    data["detector"] = recipe.detector.to_dict()
    return data


def _detections(out: dict[str, Any], index: int, to_pixels: Any, min_score: float) -> list[Detection]:
    count = int(out["num_detections"][index])
    found = []
    for row in range(count):
        score = float(out["detection_scores"][index, row])
        if score < min_score:
            break
        box = to_pixels(np.asarray(out["detection_boxes"][index, row]))
        class_id = int(out["detection_classes"][index, row])
        found.append(Detection(CLASSES[class_id - 1], class_id, score, Box(*box)))
    return found


def evaluate_export(loaded: Any, recipe: DemoRecipe, *, batch: int = 32) -> tuple[APReport, float, float]:
    """AP@0.5 on ``recipe.eval_scenes`` held-out scenes through ``serving_default``, and precision and recall of
    the detections scoring at least :data:`MIN_SCORE`."""
    arrays = scene_arrays(recipe.eval_seed, recipe.eval_scenes)
    serve = loaded.signatures["serving_default"]
    size = recipe.detector.input_size
    results: list[ImageResult] = []
    matched = found_total = truth_total = 0
    for start in range(0, len(arrays), batch):
        out = {k: v.numpy() for k, v in serve(images=tf.constant(arrays.images[start : start + batch])).items()}
        for i in range(out["num_detections"].shape[0]):
            n = start + i
            truth = [
                LabelledBox(int(c), Box(b[1] * size, b[0] * size, b[3] * size, b[2] * size))
                for b, c in zip(arrays.boxes[n], arrays.classes[n], strict=True)
                if c > 0
            ]
            dets = _detections(out, i, lambda b: (b[1] * size, b[0] * size, b[3] * size, b[2] * size), 0.0)
            results.append(ImageResult(size, size, truth, [LabelledBox(d.class_id, d.box, d.score) for d in dets]))
            confident = [d for d in dets if d.score >= MIN_SCORE]
            hits, _ = count_matches([(t.class_id, t.box) for t in truth], confident)
            matched += hits
            found_total += len(confident)
            truth_total += len(truth)
    ap = average_precision(results, CLASSES)
    return ap, matched / max(found_total, 1), matched / max(truth_total, 1)


def detect_example(loaded: Any, size: int, path: Path) -> list[Detection]:
    """Detections (score >= :data:`MIN_SCORE`) on one example file, the way the gateway gets them: tiles plus the
    whole image for large images (Spotter's own tiling and merging), ``detect_encoded`` on the bytes otherwise."""
    with Image.open(path) as opened:
        image = opened.convert("RGB")
    width, height = image.size
    views = plan_views(width, height, size, "auto", views="tiles")
    if len(views) == 1:
        data = tf.constant([path.read_bytes()])
        out = {k: v.numpy() for k, v in loaded.signatures["detect_encoded"](encoded=data).items()}
        return _detections(out, 0, lambda b: (b[1] * width, b[0] * height, b[3] * width, b[2] * height), MIN_SCORE)
    canvases, boxes = zip(*(letterbox_pil(image, size, region=v.region) for v in views), strict=True)
    out = {
        k: v.numpy() for k, v in loaded.signatures["serving_default"](images=tf.constant(np.stack(canvases))).items()
    }
    found: list[Detection] = []
    for i, placed in enumerate(boxes):
        found.extend(_detections(out, i, lambda b, p=placed: tuple(p.to_pixels(b[None])[0]), MIN_SCORE))
    return merge_detections(found)


def inference_speed(
    loaded: Any, size: int, batches: tuple[int, ...] = (1, 8, 32), seconds: float = 3.0
) -> dict[int, float]:
    """In-process images/s of ``serving_default`` at each batch size (after one warm-up call)."""
    serve = loaded.signatures["serving_default"]
    speed = {}
    for batch in batches:
        images = tf.constant(np.random.default_rng(batch).integers(0, 256, (batch, size, size, 3), dtype=np.uint8))
        serve(images=images)
        calls, started = 0, time.monotonic()
        while time.monotonic() - started < seconds or calls < 2:
            serve(images=images)
            calls += 1
        speed[batch] = calls * batch / (time.monotonic() - started)
    return speed
