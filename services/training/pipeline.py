"""What the train, evaluate and export jobs do, apart from RQ: the worker's job functions and ``spotter train --local``
call these with a :class:`Reporter` (the job's :class:`services.worker.progress.JobRun`, or one that also draws a
progress bar).

- :func:`train`: a detector or a classifier, by the dataset's kind, into ``runs/<run>/`` (checkpoint per epoch,
  resume, early stopping, TensorBoard, training curve); the run ends with ``final/`` weights.
- :func:`evaluate`: a run's final weights or a published version on a dataset split; ``evaluation.json`` and a
  precision-recall plot (detectors) or a confusion matrix (classifiers).
- :func:`export`: a complete run exported aside, through the gate (:mod:`services.training.gate`), published as
  ``models/<name>/<n+1>/``; a failure publishes nothing and leaves nothing.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from services.errors import InvalidParameter
from services.jobs.params import EvaluateParams, ExportParams, TrainParams
from services.store.checks import complete_run, dataset_classes, model_kind, train_identity
from services.store.datasets.storage import DatasetStore
from services.store.runs import RunInfo, RunStore, identity_differences
from services.training import plots
from services.training.checkpoints import checkpoint_for_epoch, latest_checkpoint, restore_checkpoint
from services.training.crops import decide_views
from services.training.export import existing_versions, export_staging, publish
from services.training.fitting import FitPlan, FitState, fit_run
from services.training.gate import run_gate
from services.training.models import default_steps, load_final, save_final
from services.training.results import EvaluationReport, ExportResult, TrainResult
from services.training.run_setup import init_weights, model_spec, train_datasets
from services.training.scoring import (
    export_predictor,
    image_detections,
    read_split,
    score_classifier,
    score_detector,
    served_size,
    version_views,
    views_used,
)
from services.training.traffic_warmup import write_warmup
from services.training.train import TrainConfig, recalibrate_batch_norm, seed_everything

log = logging.getLogger(__name__)


class Reporter(Protocol):
    """Where a job reports: progress fields, artifact files (see :class:`services.worker.progress.JobRun`)."""

    @property
    def id(self) -> str: ...

    artifacts: Path

    def update(self, **fields: Any) -> None: ...

    def write_json(self, name: str, body: Any) -> Path: ...


def _open_run(params: TrainParams, runs: RunStore, identity: dict[str, Any]) -> RunInfo | None:
    """The run's record if it is to be resumed (``None``: a new run, or one restarted, its files discarded).

    Raises:
        InvalidParameter: the run was started with other settings, or is complete.
    """
    assert params.run is not None
    info = runs.info(params.run)
    if info is not None and params.restart:
        log.info("restarting run %s: its checkpoints and weights are discarded", params.run)
        for part in ("checkpoints", "final", "tensorboard"):
            shutil.rmtree(runs.path(params.run) / part, ignore_errors=True)
        return None
    if info is not None:
        differences = identity_differences(info.identity, identity)
        if differences:
            raise InvalidParameter(f"run {params.run!r} was started with other settings: {'; '.join(differences)}")
        if info.complete:
            raise InvalidParameter(f"run {params.run!r} is already complete")
    return info


def _start_weights(
    model: Any, params: TrainParams, runs: RunStore, resumable: bool, model_root: Path | None
) -> tuple[FitState, int]:
    """Resume from the run's last checkpoint, or start from another run's or model's weights (or the builder's):
    the fit's state and the epoch it starts from."""
    run_dir = runs.path(str(params.run))
    checkpoint = latest_checkpoint(run_dir / "checkpoints") if resumable else None
    if checkpoint is None:
        if params.init_from_run is not None or params.init_from_model is not None:
            init_weights(model, params, runs, model_root)
        return FitState(), 0
    restore_checkpoint(checkpoint, model)
    state = FitState.from_dict(checkpoint.state)
    state.resumed_from = checkpoint.epoch
    log.info(
        "resuming run %s from its epoch-%d checkpoint (optimizer step %d)",
        params.run,
        checkpoint.epoch,
        int(model.optimizer.iterations.numpy()),
    )
    return state, checkpoint.epoch


def train(params: TrainParams, reporter: Reporter, data_dir: Path, model_root: Path | None = None) -> TrainResult:
    """Train (or resume) ``params.run``; the job's result (see the module's text). ``model_root`` is where
    ``init_from_model`` is read."""
    if params.run is None:
        raise InvalidParameter("a train job needs a run name (the gateway gives one)")
    store = DatasetStore(data_dir)
    manifest = store.manifest(params.dataset, params.dataset_version)
    folder = store.path(params.dataset, manifest.version)
    kind, classes = model_kind(manifest), dataset_classes(manifest)
    identity = train_identity(params, manifest)
    runs = RunStore(data_dir)
    run_dir = runs.path(params.run)
    resumed = _open_run(params, runs, identity)
    reporter.update(stage="preparing", message=f"building a {kind} for {len(classes)} classes", force=True)
    seed_everything(params.seed, deterministic_ops=params.deterministic)
    train_images = manifest.counts["train"].images
    views = decide_views(params, kind, [folder / f for f in manifest.record_files("train")])
    reporter.update(message=f"views {views.views}: {views.reason}", force=True)
    steps = params.steps_per_epoch or default_steps(views.crops or train_images, params.batch_size)
    spec = model_spec(params, kind, classes, data_dir, steps, views)
    config = _config(params, steps)
    model = spec.build()
    spec.compile(model, config)
    state, initial_epoch = _start_weights(model, params, runs, resumed is not None, model_root)
    info = RunInfo(params.run, identity, spec.to_dict(), params.model_dump(), epochs_done=initial_epoch)
    runs.write_info(info)
    runs.claim(params.run, reporter.id)

    # Each resume shifts the augmentation seed, so a resumed run does not replay its first epochs' crops.
    train_data, validation_data = train_datasets(
        spec, params, views, manifest, folder, seed=params.seed + initial_epoch, train_size=config.train_size
    )
    log.info(
        "training run %s: %s on %s v%d (%d train images), %d epochs x %d steps, batch %d, %d parameters",
        params.run,
        kind,
        manifest.name,
        manifest.version,
        manifest.counts["train"].images,
        params.epochs,
        steps,
        params.batch_size,
        model.count_params(),
    )
    started = time.monotonic()
    state = _fit(model, params, (train_data, validation_data), steps, runs, info, state, initial_epoch, reporter)
    train_seconds = time.monotonic() - started
    epochs_done = len(next(iter(state.history.values()), []))
    _keep_best(model, state, run_dir, validated=validation_data is not None, epochs_done=epochs_done)
    reporter.update(progress=92.0, stage="finishing", message="recalibrating batch-norm statistics", force=True)
    recalibrate_batch_norm(model, train_data, min(50, max(steps, 10)))
    save_final(run_dir / "final", spec, model)
    runs.write_info(replace(info, state="complete", epochs_done=epochs_done, history=state.history))
    seen = (epochs_done - initial_epoch) * steps * params.batch_size
    _write_metrics(reporter, params, state, validated=validation_data is not None, seconds=train_seconds, seen=seen)
    return TrainResult(
        run=params.run,
        run_dir=str(run_dir),
        kind=kind,
        dataset=manifest.name,
        dataset_version=manifest.version,
        epochs_done=epochs_done,
        best_epoch=state.best_epoch,
        stopped_early=state.stopped_early,
        resumed_from_epoch=state.resumed_from,
        metrics={k: v[-1] for k, v in state.history.items() if v},
        train_seconds=round(train_seconds, 1),
        views=views.views,
        views_reason=views.reason,
        weights=str(run_dir / "final"),
        tensorboard=str(run_dir / "tensorboard"),
    )


def _config(params: TrainParams, steps: int) -> TrainConfig:
    """How the model is compiled: AdamW's schedule (warm-up: 10 % of the steps, at most 200, unless given)."""
    warmup = params.warmup_steps if params.warmup_steps is not None else min(200, params.epochs * steps // 10)
    return TrainConfig(
        epochs=params.epochs,
        steps_per_epoch=steps,
        batch_size=params.batch_size,
        train_size=params.train_size or params.input_size,
        learning_rate=params.learning_rate,
        warmup_steps=warmup,
        seed=params.seed,
    )


def _fit(
    model: Any,
    params: TrainParams,
    data: tuple[Any, Any | None],
    steps: int,
    runs: RunStore,
    info: RunInfo,
    state: FitState,
    initial_epoch: int,
    reporter: Reporter,
) -> FitState:
    """The run's fit (:func:`~services.training.fitting.fit_run`), ``run.json`` updated after every epoch."""
    run_dir = runs.path(info.name)
    plan = FitPlan(params.epochs, steps, params.patience, run_dir / "checkpoints", run_dir / "tensorboard")

    def on_epoch(done: int, fit: FitState) -> None:
        runs.write_info(replace(info, epochs_done=done, history=fit.history))

    return fit_run(
        model,
        data[0],
        data[1],
        plan,
        state=state,
        initial_epoch=initial_epoch,
        batch_size=params.batch_size,
        report=reporter.update,
        on_epoch=on_epoch,
        learning_rate=params.learning_rate,
    )


def _keep_best(model: Any, state: FitState, run_dir: Path, *, validated: bool, epochs_done: int) -> None:
    """Early stopping keeps the best epoch's weights; a run that went the distance keeps its last ones (with a few
    steps an epoch, inference-mode validation lags the weights, and "best" would often be the first epoch)."""
    if validated and state.stopped_early and state.best_epoch and state.best_epoch != epochs_done:
        best = checkpoint_for_epoch(run_dir / "checkpoints", state.best_epoch)
        if best is not None:
            log.info("keeping epoch %d's weights (best validation loss %.4f)", state.best_epoch, state.best_loss)
            restore_checkpoint(best, model, optimizer=False)


def _write_metrics(
    reporter: Reporter, params: TrainParams, state: FitState, *, validated: bool, seconds: float, seen: int
) -> None:
    """The training curve, ``metrics.json`` and the last epoch's metrics in the job's record."""
    marks = {"best": state.best_epoch} if state.best_epoch else {}
    if state.resumed_from:
        marks["resumed"] = state.resumed_from
    plots.training_curve(
        state.history, reporter.artifacts / "training_curve.png", title=f"run {params.run}", marks=marks
    )
    metrics = {
        "history": state.history,
        "best_epoch": state.best_epoch,
        "best_val_loss": state.best_loss if validated else None,
        "stopped_early": state.stopped_early,
        "resumed_from_epoch": state.resumed_from,
        "train_seconds": round(seconds, 1),
        "images_per_second": round(seen / max(seconds, 1e-6), 1),
    }
    reporter.write_json("metrics.json", metrics)
    last = {k: v[-1] for k, v in state.history.items() if v}
    epochs_done = len(next(iter(state.history.values()), []))
    reporter.update(metrics=last, epochs_done=epochs_done, force=True)


def _progress(reporter: Reporter, start: float, end: float, stage: str) -> Any:
    def report(done: int, total: int) -> None:
        reporter.update(
            progress=start + (end - start) * done / max(total, 1), stage=stage, message=f"{stage} {done}/{total}"
        )

    return report


def evaluate(params: EvaluateParams, reporter: Reporter, data_dir: Path, model_root: Path) -> EvaluationReport:
    """Evaluate a run's final weights or a published version; the job's result (headline numbers, no curves)."""
    import tensorflow as tf

    dataset, dataset_version = params.dataset, params.dataset_version
    reporter.update(stage="loading", message="loading the model", force=True)
    if params.run is not None:
        info = complete_run(params.run, data_dir)
        spec, model = load_final(RunStore(data_dir).path(params.run) / "final")
        if dataset is None:
            dataset, dataset_version = info.identity["dataset"], info.identity["dataset_version"]
        source: dict[str, Any] = {"run": params.run}
    else:
        assert params.model is not None and params.version is not None
        loaded = tf.saved_model.load(str(model_root / params.model / str(params.version)))
        source = {"model": params.model, "version": params.version}
    assert dataset is not None
    manifest, examples = read_split(data_dir, dataset, dataset_version, params.split)
    classes = dataset_classes(manifest)
    if params.run is not None:
        kind, predictor, views, size = spec.kind, spec.predictor(model), spec.views, spec.input_size
    else:
        folder = model_root / str(params.model) / str(params.version)
        views = version_views(folder)
        kind, predictor = export_predictor(loaded, classes, views)
        size = served_size(loaded)
    progress = _progress(reporter, 5.0, 90.0, "evaluating")
    if kind == "detector":
        report, results = score_detector(predictor, examples, classes, min_score=params.min_score, progress=progress)  # type: ignore[arg-type]
        report["views"] = views_used(examples, size, views)
        reporter.write_json("detections.json", image_detections(examples, results, classes))
        curves = {name: {**c["curve"], "ap50": c["ap50"]} for name, c in report["per_class"].items()}
        plots.precision_recall(
            curves, reporter.artifacts / "pr_curve.png", title=f"{dataset} v{manifest.version} {params.split}"
        )
    else:
        report = score_classifier(predictor, examples, classes, progress=progress)  # type: ignore[arg-type]
        matrix = report["confusion_matrix"]
        plots.confusion_matrix(
            matrix["rows_true_columns_predicted"], classes, reporter.artifacts / "confusion_matrix.png"
        )
    report = {
        **report,
        "source": source,
        "dataset": dataset,
        "dataset_version": manifest.version,
        "split": params.split,
    }
    reporter.write_json("evaluation.json", report)
    summary = {k: v for k, v in report.items() if k != "per_class"}
    per_class = {
        name: {k: v for k, v in entry.items() if k != "curve"} for name, entry in report.get("per_class", {}).items()
    }
    log.info("evaluation of %s on %s v%d %s: %s", source, dataset, manifest.version, params.split, summary)
    reporter.update(metrics={k: v for k, v in summary.items() if isinstance(v, float)}, force=True)
    return EvaluationReport.model_validate(
        {**summary, "per_class": per_class, "report": str(reporter.artifacts / "evaluation.json")}
    )


def export(
    params: ExportParams,
    reporter: Reporter,
    data_dir: Path,
    model_root: Path,
    *,
    traffic: Sequence[bytes] | None = None,
) -> ExportResult:
    """Export a complete run, gate it, publish it; the job's result: the version, its folder, the gate's numbers.

    ``traffic`` is the model's sample of real canvases (:mod:`services.store.traffic_sample`, read by the caller),
    which becomes the version's warmup records as ``params.warmup`` says (:mod:`services.training.traffic_warmup`);
    what was written is the ``warmup.json`` artifact.
    """
    info = complete_run(params.run, data_dir)
    reporter.update(stage="loading", message=f"loading run {params.run}", force=True)
    spec, model = load_final(RunStore(data_dir).path(params.run) / "final")
    dataset = params.dataset or info.identity["dataset"]
    version = params.dataset_version if params.dataset else info.identity["dataset_version"]
    manifest, examples = read_split(data_dir, dataset, version, params.split)
    model_dir = model_root / params.model
    created = not model_dir.exists()
    try:
        with export_staging(model_dir) as staging:
            reporter.update(progress=10.0, stage="exporting", message=f"exporting to {staging.parent.name}", force=True)
            metadata = {"run": params.run, "dataset": f"{manifest.name}/{manifest.version}", "job": reporter.id}
            spec.export(model, staging, model_name=params.model, metadata=metadata)
            warmup = write_warmup(staging, params.warmup, traffic, model_name=params.model, size=spec.input_size)
            reporter.write_json("warmup.json", warmup.to_dict())
            reporter.update(progress=40.0, stage="gate", message="checking and scoring the export", force=True)
            gate = run_gate(
                staging,
                kind=spec.kind,
                classes=spec.classes,
                size=spec.input_size,
                max_detections=spec.max_detections,
                examples=examples,
                model_dir=model_dir,
                threshold=params.threshold,
                force=params.force,
            )
            reporter.write_json("gate.json", gate.to_dict())
            number = publish(staging, model_dir)
    except BaseException as exc:
        details = getattr(exc, "details", None)
        if isinstance(details, dict) and "metric" in details:
            reporter.write_json("gate.json", details)
        if created and model_dir.is_dir() and not any(model_dir.iterdir()):
            model_dir.rmdir()  # nothing was published: leave no empty model folder either
        raise
    path = model_dir / str(number)
    log.info("published %s version %d (%s)", params.model, number, gate.reason)
    return ExportResult(
        model=params.model,
        version=number,
        path=str(path),
        versions=existing_versions(model_dir),
        run=params.run,
        gate=gate.to_dict(),
    )
