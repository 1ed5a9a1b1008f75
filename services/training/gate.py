"""The export gate: a new version is published only if its export keeps the contract and it scores no worse than
the served version.

1. **Contract**: the export is loaded back and called: the signatures of docs/architecture.md with their input
   specs, a dynamic batch (batches of 1 and 2 answer rows of 1 and 2), output shapes (``[-1, N, 4]``...,
   ``[-1, K]``), the labels (ids 1..K, the run's class names). A broken export is refused, ``force`` or not.
2. **Score**: the export is scored on a dataset split (the run's validation split by default): mAP@0.5 (VOC
   all-point) for detectors, top-1 accuracy for classifiers. The served version, the latest in the model's folder
   (what TFS and the embedded server serve by default), is scored on the same images. The new one passes if
   ``new >= served - threshold``; with no served version (or one of another kind, which is reported) it passes.
   ``force`` publishes a version that fails the score, and says so in the result.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from PIL import Image

from services.errors import Conflict
from services.training.export import existing_versions
from services.training.scoring import (
    ClassifierPredictor,
    DetectorPredictor,
    Example,
    export_predictor,
    headline,
    score_classifier,
    score_detector,
    signature_labels,
    version_views,
)

log = logging.getLogger(__name__)


class GateRefused(Conflict):
    """The gate refused to publish (a broken export, or a score under the served one's by more than the threshold)."""

    code = "gate_refused"


@dataclass(slots=True)
class GateResult:
    """What the gate found; goes into the export job's result and its ``gate.json``."""

    metric: str
    candidate: float
    threshold: float
    passed: bool
    forced: bool = False
    served_version: int | None = None
    served: float | None = None
    views: str = "whole"  # how the candidate was scored (its own views, as the gateway will serve it)
    served_views: str | None = None
    reason: str = ""
    checks: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 114, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def check_contract(loaded: Any, kind: str, classes: Sequence[str], size: int, max_detections: int = 0) -> list[str]:
    """Load-and-call checks of an export; what passed, as short lines.

    Raises:
        GateRefused: the first thing that breaks the contract.
    """
    checks: list[str] = []

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise GateRefused(f"the export breaks the contract: {what}")
        checks.append(what)

    wanted = {"serving_default", "labels"} | ({"detect_encoded"} if kind == "detector" else set())
    need(wanted <= set(loaded.signatures), f"signatures {sorted(wanted)}")
    serve = loaded.signatures["serving_default"]
    spec = serve.structured_input_signature[1].get("images")
    need(
        spec is not None and spec.dtype == tf.uint8 and spec.shape.as_list() == [None, size, size, 3],
        f"serving_default takes images uint8 [-1, {size}, {size}, 3]",
    )
    k = len(classes)
    for batch in (1, 2):
        out = serve(images=tf.zeros([batch, size, size, 3], tf.uint8))
        if kind == "detector":
            n = max_detections
            shapes = {name: tuple(out[name].shape) for name in out}
            need(
                shapes
                == {
                    "detection_boxes": (batch, n, 4),
                    "detection_scores": (batch, n),
                    "detection_classes": (batch, n),
                    "num_detections": (batch,),
                },
                f"a batch of {batch} answers {batch} rows of {n} detections",
            )
        else:
            probabilities = out["probabilities"].numpy()
            need(probabilities.shape == (batch, k), f"a batch of {batch} answers probabilities [{batch}, {k}]")
            need(bool(np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-3)), "probabilities sum to 1")
    if kind == "detector":
        encoded = loaded.signatures["detect_encoded"](encoded=tf.constant([_png(40, 24), _png(24, 40)]))
        need(tuple(encoded["detection_boxes"].shape) == (2, max_detections, 4), "detect_encoded answers per image")
    labels = loaded.signatures["labels"]
    need(list(labels.structured_input_signature[1]) == ["batch"], "labels takes batch (TFS batching needs an input)")
    rows = labels(batch=tf.constant([0, 0]))
    need(rows["ids"].numpy().tolist() == [list(range(1, k + 1))] * 2, f"labels answers ids 1..{k} per row")
    need(signature_labels(loaded) == list(classes), f"labels are the classes {list(classes)}")
    return checks


def _score(
    predictor: DetectorPredictor | ClassifierPredictor, kind: str, examples: Sequence[Example], classes: Sequence[str]
) -> float:
    if kind == "detector":
        report, _ = score_detector(predictor, examples, classes)  # type: ignore[arg-type]
    else:
        report = score_classifier(predictor, examples, classes)  # type: ignore[arg-type]
    return headline(report)


def run_gate(
    export_dir: Path,
    *,
    kind: str,
    classes: Sequence[str],
    size: int,
    max_detections: int,
    examples: Sequence[Example],
    model_dir: Path,
    threshold: float,
    force: bool,
) -> GateResult:
    """Check and score the export in ``export_dir`` against the latest version in ``model_dir``.

    Raises:
        GateRefused: a broken export, or (without ``force``) a score too far under the served version's.
    """
    loaded = tf.saved_model.load(str(export_dir))
    checks = check_contract(loaded, kind, classes, size, max_detections)
    metric = "map50" if kind == "detector" else "accuracy"
    views = version_views(export_dir)
    _, predictor = export_predictor(loaded, classes, views)
    candidate = _score(predictor, kind, examples, classes)
    result = GateResult(
        metric=metric, candidate=round(candidate, 6), threshold=threshold, passed=True, views=views, checks=checks
    )
    versions = existing_versions(model_dir)
    if not versions:
        result.reason = "no version is served yet"
        return result
    served_version = versions[-1]
    result.served_version = served_version
    served_dir = model_dir / str(served_version)
    result.served_views = version_views(served_dir)
    served_kind, served_predictor = export_predictor(tf.saved_model.load(str(served_dir)), classes, result.served_views)
    if served_kind != kind:
        result.reason = f"version {served_version} is a {served_kind}: no score to compare with"
        return result
    served = _score(served_predictor, kind, examples, classes)
    result.served = round(served, 6)
    result.passed = candidate >= served - threshold
    comparison = f"{metric} {candidate:.4f} vs {served:.4f} for version {served_version} (threshold {threshold})"
    if result.passed:
        result.reason = f"passed: {comparison}"
    elif force:
        result.forced = True
        result.reason = f"forced: {comparison}"
        log.warning("gate refused but forced: %s", comparison)
    else:
        result.reason = f"refused: {comparison}"
        raise GateRefused(
            f"not published: {metric} {candidate:.4f} is more than {threshold} under version {served_version}'s "
            f"{served:.4f} on the same images (pass force to publish anyway)",
            details=result.to_dict(),
        )
    log.info("gate %s", result.reason)
    return result
