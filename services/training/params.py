"""The parameters of training, evaluation and export jobs: one pydantic model per job type, a discriminated union
on ``type`` for the jobs API, and the checks that need the disk (datasets, runs, models) before anything is queued.

TensorFlow-free: the gateway validates with these at submit time, and the worker parses the same models again.
Adding a job type is a model here, a member of :data:`JobParams`, and a job function registered in
:mod:`services.worker.jobs` (active learning's submit-time checks, which read its pool, are in
:mod:`services.training.pool`).
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.errors import DatasetNotFound, InvalidParameter
from services.training.datasets.manifest import Manifest
from services.training.datasets.storage import DatasetStore
from services.training.runs import NAME_PATTERN, RunInfo, RunStore, identity_differences

Name = Annotated[str, Field(pattern=NAME_PATTERN.pattern, description="letters, digits, '_', '.', '-' (1-64)")]
Backbone = Literal["mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large"]
Split = Literal["train", "validation", "test"]

WEIGHTS_DIR = "weights"
"""The folder of the data folder that a train job's ``weights`` file is taken from, by name."""
WEIGHTS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")


def check_weights_name(value: str) -> None:
    """``"imagenet"``, ``"none"``, or a plain file name (never a path: the worker opens nothing else on the host).

    Raises:
        ValueError: anything else (pydantic turns it into a 422 naming ``weights``).
    """
    if value in ("imagenet", "none"):
        return
    if not WEIGHTS_NAME.match(value) or ".." in value:
        raise ValueError(
            f"weights must be 'imagenet', 'none' or the name of a file in the data folder's {WEIGHTS_DIR}/ folder "
            "(letters, digits, '_', '.', '+', '-'; no folders), not a path"
        )


def check_data_relative(value: str, parameter: str) -> None:
    """A folder named by a job relative to the data folder: never absolute, never climbing out with ``..``, so a job
    can't make the worker look at (or the API answer about) anything else on the host.

    Raises:
        ValueError: an absolute path, a ``~`` path or a ``..`` part (pydantic turns it into a 422 naming it).
    """
    posix = value.replace("\\", "/")
    if not posix or posix.startswith(("/", "~")) or ".." in PurePosixPath(posix).parts:
        raise ValueError(f"{parameter} must be a folder relative to the data folder (no absolute path, no '..')")


def weights_file(value: str, data_dir: Path) -> Path:
    """The file a ``weights`` name means: ``<data_dir>/weights/<name>`` (the name is checked again here)."""
    try:
        check_weights_name(value)
    except ValueError as exc:
        raise InvalidParameter(str(exc), details={"parameter": "weights"}) from None
    return data_dir / WEIGHTS_DIR / value


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
    weights: str = Field(
        "imagenet",
        min_length=1,
        description="'imagenet' (from Keras's cache if it is there), 'none' (from scratch), or the file name of a "
        f"backbone weights file in the data folder's {WEIGHTS_DIR}/ folder (a name, not a path)",
    )
    init_from_run: Name | None = Field(
        None,
        description="start from a complete run's final weights (same kind, classes, backbone and alpha); "
        "'weights' is then not used",
    )
    init_from_model: Name | None = Field(
        None, description="or start from a published detector version's weights (same classes, backbone and alpha)"
    )
    init_from_version: int | None = Field(None, ge=1, description="with init_from_model: default the latest")
    epochs: int = Field(10, ge=1, le=1000)
    steps_per_epoch: int | None = Field(None, ge=1, le=100_000, description="default: one pass over train")
    batch_size: int = Field(16, ge=1, le=512)
    train_size: int | None = Field(None, ge=64, le=1024, multiple_of=32, description="detector crop size")
    views: Literal["auto", "whole", "tiles"] = Field(
        "auto",
        description="how the detector sees an image: 'whole' (letterboxed, the TF OD API's way), 'tiles' (trained on "
        "native-scale crops of train_size, served tiled), 'auto' (decided from the dataset's object and image sizes)",
    )
    background_ratio: float = Field(
        0.25, ge=0.0, le=0.9, description="tiles: the fraction of training crops placed at random, not on an object"
    )
    learning_rate: float = Field(2e-3, gt=0.0, le=1.0)
    warmup_steps: int | None = Field(None, ge=0, le=100_000, description="default: 10 % of the steps, at most 200")
    patience: int = Field(3, ge=0, le=100, description="early stopping on validation loss (0: off)")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    deterministic: bool = Field(False, description="TensorFlow's deterministic kernels: repeatable runs, slower")
    max_detections: int = Field(100, ge=1, le=1000)
    evaluate: bool = Field(False, description="chain an evaluate job on the validation split")
    export: PublishOptions | None = Field(None, description="chain an export job (after evaluate, if any)")
    timeout_seconds: int = Field(6 * 3600, ge=60, le=7 * 24 * 3600)

    @field_validator("weights")
    @classmethod
    def _weights_name(cls, value: str) -> str:
        check_weights_name(value)
        return value

    @model_validator(mode="after")
    def _crop_fits(self) -> TrainParams:
        if self.train_size is not None and self.train_size > self.input_size:
            raise ValueError(f"train_size {self.train_size} is larger than input_size {self.input_size}")
        if self.init_from_run is not None and self.init_from_model is not None:
            raise ValueError("give at most one of init_from_run and init_from_model")
        if self.init_from_version is not None and self.init_from_model is None:
            raise ValueError("init_from_version goes with init_from_model")
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


class ActiveLearningParams(_Params):
    """Grow a boxed dataset from a pool of images labelled as a whole (or not at all), round by round: predict on the
    pool, accept confident boxes that agree with the image's label, send the rest to review, retrain from the
    current weights on the grown dataset, evaluate, publish (see docs/active-learning.md)."""

    type: Literal["active-learning"] = "active-learning"
    model: Name = Field(description="the detector to improve: its versions are predicted with and published to")
    version: int | None = Field(None, ge=1, description="the version to start from (default: the latest)")
    dataset: Name = Field(description="the boxed detection dataset the detector's classes come from")
    dataset_version: int | None = Field(None, ge=1, description="default: the latest (fixed at submit)")
    pool: str | None = Field(
        None,
        description="a folder of images, one sub-folder per class (images in the root have no label); "
        "relative to the data folder",
    )
    pool_dataset: Name | None = Field(None, description="or a pool dataset (imported with pool: true)")
    pool_dataset_version: int | None = Field(None, ge=1)
    rounds: int = Field(3, ge=1, le=50)
    min_score: float = Field(0.9, gt=0.0, le=1.0, description="a labelled image's boxes are accepted from this score")
    unlabelled_min_score: float = Field(0.97, gt=0.0, le=1.0, description="the same for images without a label")
    candidate_score: float = Field(
        0.2,
        gt=0.0,
        le=1.0,
        description="boxes from this score are candidates: one that is not accepted sends its image to review",
    )
    min_gain: float = Field(0.005, ge=0.0, le=1.0, description="stop when a round raises validation mAP@0.5 less")
    predict_via: Literal["local", "gateway"] = Field(
        "local", description="'local': the SavedModel in the worker; 'gateway': the gateway's :detect (batched)"
    )
    predict_batch: int = Field(16, ge=1, le=256, description="images per local batch, or requests in flight")
    epochs: int = Field(3, ge=1, le=1000, description="per round")
    steps_per_epoch: int | None = Field(None, ge=1, le=100_000)
    batch_size: int = Field(16, ge=1, le=512)
    train_size: int | None = Field(None, ge=64, le=1024, multiple_of=32)
    learning_rate: float = Field(5e-4, gt=0.0, le=1.0, description="lower than from scratch: training goes on")
    warmup_steps: int | None = Field(None, ge=0, le=100_000)
    patience: int = Field(0, ge=0, le=100)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    threshold: float = Field(0.02, ge=0.0, le=1.0, description="the export gate's allowed drop per round")
    force: bool = Field(False, description="publish each round even if the gate refuses")
    run_prefix: Name | None = Field(None, description="runs are <prefix>-r1, -r2...; default: a new one")
    timeout_seconds: int = Field(24 * 3600, ge=60, le=7 * 24 * 3600)

    @field_validator("pool")
    @classmethod
    def _pool_inside_data(cls, value: str | None) -> str | None:
        if value is not None:
            check_data_relative(value, "pool")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ActiveLearningParams:
        if (self.pool is None) == (self.pool_dataset is None):
            raise ValueError("give exactly one of pool (a folder) or pool_dataset")
        if self.pool_dataset_version is not None and self.pool_dataset is None:
            raise ValueError("pool_dataset_version goes with pool_dataset")
        if self.unlabelled_min_score < self.min_score:
            raise ValueError("unlabelled_min_score must be at least min_score: images without a label need more")
        if self.candidate_score > self.min_score:
            raise ValueError("candidate_score must be at most min_score")
        return self


JobParams = Annotated[TrainParams | EvaluateParams | ExportParams | ActiveLearningParams, Field(discriminator="type")]
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


def check_train(params: TrainParams, data_dir: Path, model_root: Path | None = None) -> TrainParams:
    """Check a train job against the disk; the params with the dataset version, the run name (and the version of
    ``init_from_model``, in ``model_root``) filled in.

    Raises:
        InvalidParameter: unknown dataset or version, a pool, no train images, a weights file that is not there,
            a run that cannot be resumed with these settings (what differs is listed).
    """
    manifest = _manifest(DatasetStore(data_dir), params.dataset, params.dataset_version)
    _split_has_images(manifest, "train")
    identity = train_identity(params, manifest)
    if identity["kind"] == "classifier" and len(identity["classes"]) < 2:
        raise InvalidParameter("a classifier needs at least two classes", details={"parameter": "dataset"})
    if identity["kind"] == "classifier" and params.views == "tiles":
        raise InvalidParameter(
            f"views 'tiles' needs a detection dataset: {manifest.name!r} is a classification dataset (a classifier "
            "sees the whole image); use views 'auto' or 'whole'",
            details={"parameter": "views"},
        )
    update: dict[str, Any] = {}
    if params.init_from_run is not None:
        check_init_run(params.init_from_run, identity, data_dir)
    elif params.init_from_model is not None:
        update["init_from_version"] = check_init_model(
            params.init_from_model, params.init_from_version, identity, _required(model_root)
        )
    elif params.weights not in ("imagenet", "none") and not weights_file(params.weights, data_dir).is_file():
        raise InvalidParameter(
            f"weights file not found: {params.weights!r} is not in the data folder's {WEIGHTS_DIR}/ folder "
            "(weights must be 'imagenet', 'none' or the name of a file there)",
            details={"parameter": "weights"},
        )
    run = params.run or f"{params.dataset}-{uuid.uuid4().hex[:8]}"
    if run == params.init_from_run:
        raise InvalidParameter("init_from_run names the run being trained", details={"parameter": "init_from_run"})
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
    return params.model_copy(update={**update, "dataset_version": manifest.version, "run": run})


INIT_KEYS = ("kind", "backbone", "alpha", "classes")
"""What a run must share with a new one to lend it its weights (the dataset, and the canvas size of these fully
convolutional models, may differ)."""


def check_init_run(name: str, identity: dict[str, Any], data_dir: Path) -> RunInfo:
    """The complete run whose final weights a new run starts from.

    Raises:
        InvalidParameter: no such run, not complete, or another architecture or other classes (listed).
    """
    try:
        info = complete_run(name, data_dir)
    except InvalidParameter as err:
        raise InvalidParameter(err.message, details={"parameter": "init_from_run"}) from err
    differences = [
        f"{k}: {info.identity.get(k)!r} -> {identity.get(k)!r}"
        for k in INIT_KEYS
        if info.identity.get(k) != identity[k]
    ]
    if differences:
        raise InvalidParameter(
            f"run {name!r} can't lend its weights to this run ({'; '.join(differences)})",
            details={"parameter": "init_from_run", "differences": differences},
        )
    return info


def _required(model_root: Path | None) -> Path:
    if model_root is None:
        raise InvalidParameter("init_from_model needs the model root", details={"parameter": "init_from_model"})
    return model_root


def version_metadata(model_root: Path, name: str, version: int) -> dict[str, Any]:
    """A published version's ``assets.extra/spotter.json`` (empty for foreign models without one)."""
    path = model_root / name / str(version) / "assets.extra" / "spotter.json"
    if not path.is_file():
        return {}
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def detector_version(name: str, version: int | None, root: Path, parameter: str) -> tuple[int, dict[str, Any]]:
    """``(number, detector config)`` of a published version exported by Spotter (the config from its metadata).

    Raises:
        InvalidParameter: no such model or version, or not a detector exported by Spotter.
    """
    versions = model_versions(root, name)
    if not versions or (version is not None and version not in versions):
        raise InvalidParameter(
            f"no model {name!r} version {version or 'any'} (versions: {versions or 'none'})",
            details={"parameter": parameter},
        )
    number = version or versions[-1]
    info = version_metadata(root, name, number)
    config = info.get("detector")
    if info.get("kind") != "detector" or not isinstance(config, dict):
        raise InvalidParameter(
            f"model {name!r} version {number} is not a detector exported by Spotter: its weights can't be reused",
            details={"parameter": parameter},
        )
    return number, config


def check_init_model(name: str, version: int | None, identity: dict[str, Any], root: Path) -> int:
    """The published detector version whose weights a new run starts from (its number).

    Raises:
        InvalidParameter: see :func:`detector_version`; or another architecture or other classes (listed).
    """
    number, config = detector_version(name, version, root, "init_from_model")
    theirs = {"kind": "detector", "backbone": config.get("backbone"), "alpha": config.get("alpha")}
    theirs["classes"] = list(config.get("classes") or [])
    differences = [f"{k}: {theirs.get(k)!r} -> {identity.get(k)!r}" for k in INIT_KEYS if theirs.get(k) != identity[k]]
    if differences:
        raise InvalidParameter(
            f"model {name!r} version {number} can't lend its weights to this run ({'; '.join(differences)})",
            details={"parameter": "init_from_model", "differences": differences},
        )
    return number


def resolve_path(path: str, data_dir: Path) -> Path:
    """A folder a job names, under the data folder (checked again here: the job may come from an old record)."""
    try:
        check_data_relative(path, "pool")
    except ValueError as exc:
        raise InvalidParameter(str(exc), details={"parameter": "pool"}) from None
    return data_dir / path


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


def check_active_learning(params: ActiveLearningParams, data_dir: Path, model_root: Path) -> ActiveLearningParams:
    """Check an active-learning job: the detector version (one of our exports, with the dataset's classes), the
    boxed dataset (train and validation images), and the pool (at least one usable image: a known label or none, and
    readable). The params with the versions, the pool's resolved folder and the run prefix filled in.
    """
    from services.training.pool import scan_pool_folder

    update: dict[str, Any] = {}
    store = DatasetStore(data_dir)
    manifest = _manifest(store, params.dataset, params.dataset_version)
    if model_kind(manifest) != "detector":
        raise InvalidParameter(f"dataset {manifest.name!r} has no boxes", details={"parameter": "dataset"})
    for split in ("train", "validation"):
        _split_has_images(manifest, split)
    classes = dataset_classes(manifest)
    update["dataset_version"] = manifest.version
    number, config = detector_version(params.model, params.version, model_root, "model")
    if list(config.get("classes") or []) != list(classes):
        raise InvalidParameter(
            f"model {params.model!r} version {number} detects {config.get('classes')}, dataset {manifest.name!r} "
            f"has {list(classes)}: the classes (and their order) must be the same",
            details={"parameter": "dataset"},
        )
    update["version"] = number
    if params.pool is not None:
        root = resolve_path(params.pool, data_dir)
        if not root.is_dir():
            raise InvalidParameter(f"pool folder not found: {params.pool}", details={"parameter": "pool"})
        scan = scan_pool_folder(root, classes)
        if not scan.usable:
            why = []
            if scan.images == 0:
                why.append("it holds no images")
            if scan.unknown:
                listed = ", ".join(f"{k} ({v})" for k, v in sorted(scan.unknown.items()))
                why.append(f"class folders the detector does not know: {listed} (classes: {', '.join(classes)})")
            if scan.unreadable:
                why.append(f"no readable image ({len(scan.unreadable)} unreadable, e.g. {scan.unreadable[0]})")
            raise InvalidParameter(
                f"nothing in pool {params.pool!r} is usable: {'; '.join(why)}",
                details={"parameter": "pool", "unknown_classes": scan.unknown, "unreadable": scan.unreadable[:20]},
            )
    else:
        assert params.pool_dataset is not None
        pool = _manifest(store, params.pool_dataset, params.pool_dataset_version)
        if str(pool.kind) != "pool":
            raise InvalidParameter(
                f"dataset {pool.name!r} is a {pool.kind} dataset, not a pool", details={"parameter": "pool_dataset"}
            )
        counts = pool.counts.get("pool")
        known = {c.name for c in pool.classes} & set(classes)
        unlabelled = counts.images - sum(c.images for c in counts.per_class.values()) if counts else 0
        if counts is None or counts.images == 0 or (not known and unlabelled <= 0):
            raise InvalidParameter(
                f"nothing in pool dataset {pool.name!r} is usable: no images with the detector's classes "
                f"({', '.join(classes)}) or without a label",
                details={"parameter": "pool_dataset"},
            )
        update["pool_dataset_version"] = pool.version
    update["run_prefix"] = params.run_prefix or f"{params.dataset}-al-{uuid.uuid4().hex[:8]}"
    for r in range(1, params.rounds + 1):
        if RunStore(data_dir).info(f"{update['run_prefix']}-r{r}") is not None:
            raise InvalidParameter(
                f"run {update['run_prefix']}-r{r} exists: name another run_prefix", details={"parameter": "run_prefix"}
            )
    return params.model_copy(update=update)


def params_json(params: BaseModel) -> dict[str, Any]:
    """The params as plain JSON (what a job's body and its ``meta["params"]`` hold)."""
    data: dict[str, Any] = json.loads(params.model_dump_json())
    return data
