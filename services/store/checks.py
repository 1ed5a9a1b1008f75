"""The submit-time checks of jobs that need the disk (datasets, runs, published models): each takes a job's
parameters (the models of :mod:`services.jobs.params`) and returns them with the versions, run names and defaults
filled in, or raises :class:`~services.errors.InvalidParameter` (a 422).

The gateway runs them (:func:`plan`) before anything is queued; the worker runs them again. Active learning's pool
scan is in :mod:`services.store.pool`.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from services.errors import DatasetNotFound, InvalidParameter
from services.jobs.chains import PlannedJob
from services.jobs.params import (
    WEIGHTS_DIR,
    ActiveLearningParams,
    EvaluateParams,
    ExportParams,
    SweepParams,
    TrainParams,
    check_data_relative,
    check_weights_name,
)
from services.jobs.types import chain_of, job_type
from services.model_repository import model_versions, version_metadata
from services.store.datasets.manifest import Manifest
from services.store.datasets.storage import DatasetStore
from services.store.runs import RunInfo, RunStore, identity_differences
from services.store.sweeps import default_prefix, new_run, plan_sweep, row_error


def weights_file(value: str, data_dir: Path) -> Path:
    """The file a ``weights`` name means: ``<data_dir>/weights/<name>`` (the name is checked again here)."""
    try:
        check_weights_name(value)
    except ValueError as exc:
        raise InvalidParameter(str(exc), details={"parameter": "weights"}) from None
    return data_dir / WEIGHTS_DIR / value


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
    """What must match for a job to resume a run (:data:`services.store.runs.RESUME_KEYS`)."""
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
    if identity["kind"] == "detector" and params.input_size < 64:
        raise InvalidParameter(
            f"input_size {params.input_size} is too small for a detector (at least 64; 32 is for classifiers)",
            details={"parameter": "input_size"},
        )
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
    from services.store.pool import scan_pool_folder

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


def check_sweep(params: SweepParams, data_dir: Path, model_root: Path) -> SweepParams:
    """Check a sweep (:mod:`services.store.sweeps`): every row as its train job (the dataset, its kind and train
    images, the weights file, a detector's input size) into a new run, and the split it is evaluated on. The params
    with the dataset version and the run prefix filled in.

    Raises:
        InvalidParameter: a row or the split does not pass (naming the sweep's parameter, and the row).
    """
    checked = params.model_copy(update={"run_prefix": params.run_prefix or default_prefix(params.dataset)})
    rows = []
    for row in checked.rows():
        new_run(row, data_dir)
        try:
            rows.append(check_train(row, data_dir, model_root))
        except InvalidParameter as err:
            raise row_error(row, err) from err
    version, run = rows[0].dataset_version, str(rows[0].run)
    evaluate = EvaluateParams(run=run, dataset=params.dataset, dataset_version=version, split=params.split)
    check_evaluate(evaluate, data_dir, model_root, chained=True)
    return checked.model_copy(update={"dataset_version": version})


def check_job(params: BaseModel, data_dir: Path, model_root: Path, *, chained: bool = False) -> BaseModel:
    """Any job's parameters checked against the disk (``chained``: it follows a train job in a chain)."""
    if isinstance(params, TrainParams):
        return check_train(params, data_dir, model_root)
    if isinstance(params, EvaluateParams):
        return check_evaluate(params, data_dir, model_root, chained=chained)
    if isinstance(params, ExportParams):
        return check_export(params, data_dir, chained=chained)
    if isinstance(params, ActiveLearningParams):
        return check_active_learning(params, data_dir, model_root)
    if isinstance(params, SweepParams):
        return check_sweep(params, data_dir, model_root)
    raise TypeError(f"not a job's parameters: {type(params).__name__}")


def plan(params: BaseModel, data_dir: Path, model_root: Path) -> list[PlannedJob]:
    """The chain a submission becomes (:func:`services.jobs.types.chain_of`), every part checked, each with a new id
    (and a train job with the job that last claimed its run).

    Raises:
        InvalidParameter: a part does not pass its check: nothing is queued.
    """
    first = check_job(params, data_dir, model_root)
    if isinstance(first, SweepParams):  # not a line: its rows run side by side
        return plan_sweep(first)
    chain = [first, *(check_job(p, data_dir, model_root, chained=True) for p in chain_of(first)[1:])]
    planned = []
    for part in chain:
        run = getattr(part, "run", None) if isinstance(part, TrainParams) else None
        claimed = RunStore(data_dir).owner(run) if run else None
        planned.append(PlannedJob(job_type(part).name, part, uuid.uuid4().hex, run_claimed_by=claimed))
    return planned
