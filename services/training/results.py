"""What the train, evaluate and export jobs return: typed results, turned into the job record's JSON only at the
boundary (:meth:`JobResult.to_json`, called by the job runner in :mod:`services.worker.jobs`).

TensorFlow-free. The JSON is the same as the dictionaries these replaced: a field is in it when the job set it (an
evaluation of a classifier has no ``map50``, a detector's has no ``accuracy``), with ``null`` where it was set to
nothing (a detector without objects has ``map50: null``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class JobResult(BaseModel):
    """A job's result; :meth:`to_json` is what the job record holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_json(self) -> dict[str, Any]:
        """The result as plain JSON: the fields that were set, by name."""
        return self.model_dump(mode="json", exclude_unset=True)


class TrainResult(JobResult):
    """A finished train job: the run, how far it got, its last epoch's metrics, and where its weights are."""

    run: str
    run_dir: str
    kind: Literal["detector", "classifier"]
    dataset: str
    dataset_version: int
    epochs_done: int
    best_epoch: int
    stopped_early: bool
    resumed_from_epoch: int | None
    metrics: dict[str, float]
    """The last epoch's values (``loss``, ``val_loss``, ``val_accuracy``...)."""
    train_seconds: float
    views: str
    views_reason: str
    weights: str
    tensorboard: str


class EvaluationReport(JobResult):
    """A finished evaluate job: the headline numbers of a run or a published version on a dataset split (the full
    report, curves included, is the job's ``evaluation.json``, at :attr:`report`).

    Detectors have the mAP fields (``map50`` is VOC's all-point AP@0.5, the gate's score) and the operating point's
    ``precision``, ``recall`` and ``mean_iou``; classifiers ``accuracy`` and the confusion matrix. ``per_class``
    holds each class's numbers (for detectors ``ap50`` and the others, without the curve).
    """

    kind: Literal["detector", "classifier"]
    images: int
    source: dict[str, Any]
    """``{"run": name}`` or ``{"model": name, "version": n}``."""
    dataset: str
    dataset_version: int
    split: str
    per_class: dict[str, dict[str, Any]]
    report: str
    """The path of ``evaluation.json``."""
    # detectors
    objects: int | None = None
    iou: float | None = None
    min_score: float | None = None
    map50: float | None = None
    map50_coco101: float | None = None
    map50_pycocotools: float | None = None
    map_coco: float | None = None
    mean_iou: float | None = None
    precision: float | None = None
    recall: float | None = None
    views: dict[str, Any] | None = None
    # classifiers
    accuracy: float | None = None
    unknown_predictions: int | None = None
    confusion_matrix: dict[str, Any] | None = None

    @property
    def headline(self) -> float:
        """The one number the report is judged by: mAP@0.5 for detectors, top-1 accuracy for classifiers (0 when
        there is none)."""
        value = self.map50 if self.kind == "detector" else self.accuracy
        return float(value) if value is not None else 0.0

    def ap50(self) -> dict[str, float | None]:
        """Each class's AP@0.5 (detectors)."""
        return {name: entry.get("ap50") for name, entry in self.per_class.items()}


class ExportResult(JobResult):
    """A finished export job: the published version, its folder, the model's versions and the gate's verdict."""

    model: str
    version: int
    path: str
    versions: list[int]
    run: str
    gate: dict[str, Any]


class SweepResult(JobResult):
    """A finished sweep: one row per alpha and input size (its run and jobs, its metric on the split, its export's
    images/s by batch size and at the best batch, bytes on disk, parameters, Pareto flags), and the rows on the
    front (``alpha@size``), with the paths of ``sweep.json`` and ``sweep.png``."""

    kind: Literal["detector", "classifier"]
    metric: str
    """``map50`` (detectors) or ``accuracy`` (classifiers)."""
    dataset: str
    dataset_version: int
    split: str
    inputs: str
    """What the exports were fed while measured: ``"<split> images"`` (letterboxed), or ``"random pixels"``."""
    rows: list[dict[str, Any]]
    pareto: list[str]
    table: str
    plot: str
