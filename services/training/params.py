"""The parameters of training, evaluation and export jobs: one pydantic model per job type, a discriminated union
on ``type`` for the jobs API, and the checks that need the disk (datasets, runs, models) before anything is queued.

TensorFlow-free: the gateway validates with these at submit time, and the worker parses the same models again.
Adding a job type (active learning) is a model here, a member of :data:`JobParams`, and a job function registered in
:mod:`services.worker.jobs`.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.errors import DatasetNotFound, InvalidParameter
from services.training.datasets.manifest import Manifest
from services.training.datasets.storage import DatasetStore
from services.training.runs import NAME_PATTERN, RunInfo, RunStore, identity_differences

Name = Annotated[str, Field(pattern=NAME_PATTERN.pattern, description="letters, digits, '_', '.', '-' (1-64)")]
Backbone = Literal["mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large"]
Split = Literal["train", "validation", "test"]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PublishOptions(_Params):
    """Where an export publishes, and its gate."""

    model: Name = Field(description="the model's name: published as models/<model>/<n+1>/")
    threshold: float = Field(0.02, ge=0.0, le=1.0, description="allowed drop of the gate's score vs the served one")
    force: bool = Field(False, description="publish even if the gate refuses")


class TrainParams(_Params):
    """Train a detector (detection dataset) or a classifier (classification dataset) into a run."""

    type: Literal["train"] = "train"
    dataset: Name
    dataset_version: int | None = Field(None, ge=1, description="default: the latest (fixed at submit)")
    run: Name | None = Field(None, description="a run to train into; naming an unfinished one resumes it")
    restart: bool = Field(False, description="start the run over, discarding its checkpoints")
    backbone: Backbone = "mobilenet_v2"
    alpha: float = Field(0.35, ge=0.1, le=1.4, description="MobileNet width multiplier")
    input_size: int = Field(320, ge=64, le=1024, multiple_of=32, description="the model's canvas S")
    weights: str = Field("imagenet", min_length=1, description="'imagenet' (if cached), 'none', or a weights file")
    epochs: int = Field(10, ge=1, le=1000)
    steps_per_epoch: int | None = Field(None, ge=1, le=100_000, description="default: one pass over train")
    batch_size: int = Field(16, ge=1, le=512)
    train_size: int | None = Field(None, ge=64, le=1024, multiple_of=32, description="detector crop size")
    learning_rate: float = Field(2e-3, gt=0.0, le=1.0)
    warmup_steps: int | None = Field(None, ge=0, le=100_000, description="default: 10 % of the steps, at most 200")
    patience: int = Field(3, ge=0, le=100, description="early stopping on validation loss (0: off)")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    deterministic: bool = Field(False, description="TensorFlow's deterministic kernels: repeatable runs, slower")
    max_detections: int = Field(100, ge=1, le=1000)
    evaluate: bool = Field(False, description="chain an evaluate job on the validation split")
    export: PublishOptions | None = Field(None, description="chain an export job (after evaluate, if any)")
    timeout_seconds: int = Field(6 * 3600, ge=60, le=7 * 24 * 3600)

    @model_validator(mode="after")
    def _crop_fits(self) -> TrainParams:
        if self.train_size is not None and self.train_size > self.input_size:
            raise ValueError(f"train_size {self.train_size} is larger than input_size {self.input_size}")
        return self


class EvaluateParams(_Params):
    """Evaluate a run's trained weights, or a published model version, on a dataset split."""

    type: Literal["evaluate"] = "evaluate"
    run: Name | None = None
    model: Name | None = None
    version: int | None = Field(None, ge=1, description="with model: default the latest")
    dataset: Name | None = Field(None, description="default: the run's dataset (required with model)")
    dataset_version: int | None = Field(None, ge=1)
    split: Split = "validation"
    min_score: float = Field(0.5, ge=0.0, le=1.0, description="operating point for precision, recall and mean IoU")
    timeout_seconds: int = Field(3600, ge=60, le=7 * 24 * 3600)

    @model_validator(mode="after")
    def _one_source(self) -> EvaluateParams:
        if (self.run is None) == (self.model is None):
            raise ValueError("give exactly one of run (trained weights) or model (a published version)")
        if self.version is not None and self.model is None:
            raise ValueError("version goes with model")
        if self.model is not None and self.dataset is None:
            raise ValueError("evaluating a published model needs a dataset")
        return self


class ExportParams(_Params):
    """Export a complete run, gate it against the served version, and publish it."""

    type: Literal["export"] = "export"
    run: Name
    model: Name
    threshold: float = Field(0.02, ge=0.0, le=1.0)
    force: bool = False
    dataset: Name | None = Field(None, description="the gate's data; default: the run's dataset")
    dataset_version: int | None = Field(None, ge=1)
    split: Split = "validation"
    timeout_seconds: int = Field(3600, ge=60, le=7 * 24 * 3600)


JobParams = Annotated[TrainParams | EvaluateParams | ExportParams, Field(discriminator="type")]
"""What ``POST /v1/jobs`` takes."""

KIND_OF_DATASET = {"detection": "detector", "classification": "classifier"}


def model_kind(manifest: Manifest) -> str:
    """``detector`` or ``classifier`` for a dataset version; 422 for a pool (it has no boxes to train on)."""
    kind = KIND_OF_DATASET.get(str(manifest.kind))
    if kind is None:
        raise InvalidParameter(
            f"dataset {manifest.name!r} version {manifest.version} is a {manifest.kind} dataset: nothing to train on"
        )
    return kind


def dataset_classes(manifest: Manifest) -> tuple[str, ...]:
    """Class names by label-map id 1..K; 422 when the ids are not exactly 1..K (a model's outputs are indexed)."""
    ids = sorted(c.id for c in manifest.classes)
    if ids != list(range(1, len(ids) + 1)):
        raise InvalidParameter(f"dataset {manifest.name!r}: label-map ids must be 1..K to train on, got {ids}")
    return tuple(c.name for c in sorted(manifest.classes, key=lambda c: c.id))


def _manifest(store: DatasetStore, name: str, version: int | None) -> Manifest:
    try:
        return store.manifest(name, version)
    except DatasetNotFound as err:
        known = ", ".join(store.names()) or "none"
        raise InvalidParameter(f"{err.message} (datasets: {known})", details={"parameter": "dataset"}) from err


def _split_has_images(manifest: Manifest, split: str) -> None:
    counts = manifest.counts.get(split)
    if counts is None or counts.images == 0:
        raise InvalidParameter(
            f"dataset {manifest.name!r} version {manifest.version} has no {split} images",
            details={"parameter": "split"},
        )


def train_identity(params: TrainParams, manifest: Manifest) -> dict[str, Any]:
    """What must match for a job to resume a run (:data:`services.training.runs.RESUME_KEYS`)."""
    return {
        "kind": model_kind(manifest),
        "dataset": manifest.name,
        "dataset_version": manifest.version,
        "backbone": params.backbone,
        "alpha": params.alpha,
        "input_size": params.input_size,
        "classes": list(dataset_classes(manifest)),
    }


def check_train(params: TrainParams, data_dir: Path) -> TrainParams:
    """Check a train job against the disk; the params with the dataset version and the run name filled in.

    Raises:
        InvalidParameter: unknown dataset or version, a pool, no train images, a weights file that is not there,
            a run that cannot be resumed with these settings (what differs is listed).
    """
    manifest = _manifest(DatasetStore(data_dir), params.dataset, params.dataset_version)
    _split_has_images(manifest, "train")
    identity = train_identity(params, manifest)
    if identity["kind"] == "classifier" and len(identity["classes"]) < 2:
        raise InvalidParameter("a classifier needs at least two classes", details={"parameter": "dataset"})
    if params.weights not in ("imagenet", "none") and not resolve_path(params.weights, data_dir).is_file():
        raise InvalidParameter(f"weights file not found: {params.weights}", details={"parameter": "weights"})
    run = params.run or f"{params.dataset}-{uuid.uuid4().hex[:8]}"
    info = RunStore(data_dir).info(run)
    if info is not None and not params.restart:
        differences = identity_differences(info.identity, identity)
        if differences:
            raise InvalidParameter(
                f"run {run!r} was started with other settings ({'; '.join(differences)}): name another run, or "
                "pass restart to start it over",
                details={"parameter": "run", "differences": differences},
            )
        if info.complete:
            raise InvalidParameter(
                f"run {run!r} is complete ({info.epochs_done} epochs): name another run, or pass restart",
                details={"parameter": "run"},
            )
    return params.model_copy(update={"dataset_version": manifest.version, "run": run})


def resolve_path(path: str, data_dir: Path) -> Path:
    """A path as a job means it: absolute, or relative to the data folder."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else data_dir / p


def complete_run(name: str, data_dir: Path) -> RunInfo:
    """A run whose training is complete.

    Raises:
        InvalidParameter: no such run, or it has not finished training.
    """
    info = RunStore(data_dir).info(name)
    if info is None:
        raise InvalidParameter(f"no run named {name!r}", details={"parameter": "run"})
    if not info.complete:
        raise InvalidParameter(
            f"run {name!r} has not finished training ({info.epochs_done} epochs done)", details={"parameter": "run"}
        )
    return info


def model_versions(model_root: Path, name: str) -> list[int]:
    folder = model_root / name
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file())


def check_evaluate(
    params: EvaluateParams, data_dir: Path, model_root: Path, *, chained: bool = False
) -> EvaluateParams:
    """Check an evaluate job (``chained``: its run is trained by the job it follows, so it need not exist yet)."""
    update: dict[str, Any] = {}
    if params.model is not None:
        versions = model_versions(model_root, params.model)
        if not versions:
            raise InvalidParameter(f"no model named {params.model!r} in the model root", details={"parameter": "model"})
        if params.version is not None and params.version not in versions:
            raise InvalidParameter(
                f"model {params.model!r} has no version {params.version} (versions: {versions})",
                details={"parameter": "version"},
            )
        update["version"] = params.version or versions[-1]
    elif not chained:
        assert params.run is not None
        _default_dataset(complete_run(params.run, data_dir), params.dataset, update)
    _check_dataset(data_dir, update.get("dataset", params.dataset), params.dataset_version, params.split, update)
    return params.model_copy(update=update)


def check_export(params: ExportParams, data_dir: Path, *, chained: bool = False) -> ExportParams:
    """Check an export job (``chained``: see :func:`check_evaluate`)."""
    update: dict[str, Any] = {}
    if not chained:
        _default_dataset(complete_run(params.run, data_dir), params.dataset, update)
    _check_dataset(data_dir, update.get("dataset", params.dataset), params.dataset_version, params.split, update)
    return params.model_copy(update=update)


def _default_dataset(info: RunInfo, dataset: str | None, update: dict[str, Any]) -> None:
    """No dataset given: the run's own (the version it trained on)."""
    if dataset is None:
        update["dataset"] = info.identity["dataset"]
        update["dataset_version"] = info.identity["dataset_version"]


def _check_dataset(data_dir: Path, name: str | None, version: int | None, split: str, update: dict[str, Any]) -> None:
    if name is None:
        return
    manifest = _manifest(DatasetStore(data_dir), name, update.get("dataset_version", version))
    _split_has_images(manifest, split)
    update["dataset_version"] = manifest.version


def params_json(params: BaseModel) -> dict[str, Any]:
    """The params as plain JSON (what a job's body and its ``meta["params"]`` hold)."""
    data: dict[str, Any] = json.loads(params.model_dump_json())
    return data
