"""Job functions the worker runs. Each is referenced by its dotted path when enqueued (``IMPORT_JOB``), takes one
JSON-able ``body`` and returns a JSON-able result, runs inside :func:`~services.worker.progress.job_run`, and calls
``services.training`` for the work. TensorFlow is only imported by the code the job calls, in the work-horse.

:data:`JOB_TYPES` registers the job types of the jobs API (``POST /v1/jobs``): its parameters model, its function,
its queue, and how a submission becomes a chain of jobs. Adding a type (active learning) is one entry here, one
parameters model in :mod:`services.training.params`, and its function below.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from services.errors import Conflict, SpotterError
from services.training.datasets.importer import ImportRequest, Progress, import_dataset
from services.training.datasets.report import problems_table, render_text, summary_table
from services.training.datasets.storage import DatasetStore
from services.training.params import (
    ActiveLearningParams,
    EvaluateParams,
    ExportParams,
    TrainParams,
    check_active_learning,
    check_evaluate,
    check_export,
    check_train,
)
from services.training.runs import RunStore
from services.worker.context import worker_settings
from services.worker.progress import JobRun, finish, job_run
from services.worker.queues import TRAIN_QUEUE

logger = logging.getLogger(__name__)

IMPORT_JOB = "services.worker.jobs.import_dataset_job"


def import_body(request: ImportRequest) -> dict[str, Any]:
    """The body of an import job: the request as JSON (paths inside the data folder are best given relative to it,
    so a gateway and a worker that mount the data folder at different places agree)."""
    return {"request": request.to_dict()}


def _resolve(path: str | None, data_dir: Path) -> str | None:
    if not path:
        return None
    p = Path(path)
    return str(p if p.is_absolute() else data_dir / p)


def import_dataset_job(body: dict[str, Any]) -> dict[str, Any]:
    """Import an uploaded archive (or a folder) as a new dataset version; the import's result (see
    :meth:`~services.training.datasets.importer.ImportResult.to_dict`) with the job's artifacts.

    Artifacts: ``log.txt`` (with the summary and problems tables), ``problems.json``, ``result.json``.
    """
    settings = worker_settings()
    with job_run("import", settings.data_dir) as run:
        raw = dict(body["request"])
        raw["source"] = _resolve(raw["source"], settings.data_dir)
        raw["label_map"] = _resolve(raw.get("label_map"), settings.data_dir)
        request = ImportRequest.from_dict(raw)

        def on_progress(p: Progress) -> None:
            run.update(progress=p.percent, stage=p.stage, message=f"{p.stage}: {p.done}/{p.total}")

        try:
            result = import_dataset(request, DatasetStore(settings.data_dir), on_progress, token=run.id)
        except SpotterError as exc:
            if isinstance(exc.details, dict) and "problems" in exc.details:
                run.write_json("problems.json", exc.details["problems"])
            raise
        logger.info("dataset summary\n%s", render_text(summary_table(result.manifest)))
        if len(result.problems):
            logger.info("problems\n%s", render_text(problems_table(result.problems, limit=None)))
        run.write_json("problems.json", result.problems.to_dict())
        totals = result.manifest.totals()
        run.update(
            counts={
                "images": sum(t["images"] for t in totals.values()),
                "boxes": sum(t["boxes"] for t in totals.values()),
                "problems": len(result.problems),
            },
            dataset=result.manifest.name,
            version=result.manifest.version,
        )
        return finish(run, result.to_dict())


TRAIN_JOB = "services.worker.jobs.train_job"
EVALUATE_JOB = "services.worker.jobs.evaluate_job"
EXPORT_JOB = "services.worker.jobs.export_job"
ACTIVE_LEARNING_JOB = "services.worker.jobs.active_learning_job"

Planner = Callable[[Any, Path, Path], list[BaseModel]]
"""``(params, data_dir, model_root) -> the chain of checked params`` (raises InvalidParameter; nothing is queued)."""


@dataclass(frozen=True, slots=True)
class JobType:
    """A job type of the jobs API: its parameters, its function (dotted path), its queue, and its planner."""

    name: str
    params: type[BaseModel]
    func: str
    queue: str
    plan: Planner


def _plan_train(params: TrainParams, data_dir: Path, model_root: Path) -> list[BaseModel]:
    """A train job, then (as asked) an evaluate job and an export job on the same run, each after the one before."""
    train = check_train(params, data_dir, model_root)
    assert train.run is not None
    chain: list[BaseModel] = [train]
    data = {"dataset": train.dataset, "dataset_version": train.dataset_version}
    if params.evaluate:
        chain.append(check_evaluate(EvaluateParams(run=train.run, **data), data_dir, model_root, chained=True))
    if params.export is not None:
        export = ExportParams(run=train.run, **params.export.model_dump(), **data)
        chain.append(check_export(export, data_dir, chained=True))
    return chain


JOB_TYPES: dict[str, JobType] = {
    "train": JobType("train", TrainParams, TRAIN_JOB, TRAIN_QUEUE, _plan_train),
    "evaluate": JobType(
        "evaluate",
        EvaluateParams,
        EVALUATE_JOB,
        TRAIN_QUEUE,
        lambda p, data_dir, model_root: [check_evaluate(p, data_dir, model_root)],
    ),
    "export": JobType(
        "export", ExportParams, EXPORT_JOB, TRAIN_QUEUE, lambda p, data_dir, model_root: [check_export(p, data_dir)]
    ),
    "active-learning": JobType(
        "active-learning",
        ActiveLearningParams,
        ACTIVE_LEARNING_JOB,
        TRAIN_QUEUE,
        lambda p, data_dir, model_root: [check_active_learning(p, data_dir, model_root)],
    ),
}


def _claim_run(name: str, run: JobRun) -> None:
    """Refuse to train a run another live job is training; otherwise mark it as this job's."""
    from services.worker.control import live_owner

    store = RunStore(worker_settings().data_dir)
    if run.job is not None:
        owner = live_owner(run.job.connection, store, name, exclude=run.id)
        if owner is not None:
            raise Conflict(f"run {name!r} is being trained by job {owner}")
    store.claim(name, run.id)


def train_job(body: dict[str, Any]) -> dict[str, Any]:
    """Train (or resume) a run; artifacts: ``log.txt``, ``metrics.json``, ``training_curve.png``, ``result.json``."""
    settings = worker_settings()
    with job_run("train", settings.data_dir) as run:
        params = TrainParams.model_validate(body["params"])
        assert params.run is not None
        _claim_run(params.run, run)
        from services.training import pipeline

        return finish(run, pipeline.train(params, run, settings.data_dir, settings.model_root))


def evaluate_job(body: dict[str, Any]) -> dict[str, Any]:
    """Evaluate a run or a published version; artifacts: ``evaluation.json``, ``pr_curve.png`` or
    ``confusion_matrix.png``."""
    settings = worker_settings()
    with job_run("evaluate", settings.data_dir) as run:
        params = EvaluateParams.model_validate(body["params"])
        from services.training import pipeline

        return finish(run, pipeline.evaluate(params, run, settings.data_dir, settings.model_root))


def export_job(body: dict[str, Any]) -> dict[str, Any]:
    """Export a complete run through the gate and publish it; artifacts: ``gate.json``."""
    settings = worker_settings()
    with job_run("export", settings.data_dir) as run:
        params = ExportParams.model_validate(body["params"])
        from services.training import pipeline

        return finish(run, pipeline.export(params, run, settings.data_dir, settings.model_root))


def active_learning_job(body: dict[str, Any]) -> dict[str, Any]:
    """Grow a dataset from a pool round by round; artifacts: ``active_learning.json``, ``rounds.png``,
    ``problems.json``, ``round-N/`` (review list, contact sheet, VOC folder; training, evaluation and gate files)."""
    settings = worker_settings()
    with job_run("active-learning", settings.data_dir) as run:
        params = ActiveLearningParams.model_validate(body["params"])
        from services.training import active_learning

        if params.predict_via != "gateway":
            return finish(run, active_learning.run(params, run, settings.data_dir, settings.model_root))
        from services.training.pool_predict import gateway_predictor

        predictor = gateway_predictor(settings.gateway_url, settings.gateway_api_key, params)
        try:
            result = active_learning.run(params, run, settings.data_dir, settings.model_root, predict=predictor)
        finally:
            predictor.close()
        return finish(run, result)
