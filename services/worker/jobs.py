"""Job functions the worker runs. Each is referenced by its dotted path when enqueued (:mod:`services.jobs.types`),
takes one JSON-able ``body`` and returns a JSON-able result, runs inside :func:`~services.worker.progress.job_run`,
and calls ``services.training`` for the work. TensorFlow is only imported by the code the job calls, in the work-horse.

:data:`services.jobs.types.JOB_TYPES` names the job types of the jobs API (``POST /v1/jobs``): each one's parameters
model, queue and entry point here (by dotted path). What a job does is its type's function in :data:`JOB_FUNCTIONS`
(parameters and a :class:`JobContext` in, a typed result out); :func:`execute` runs it, for the worker's entry points
and for ``spotter ... --local`` alike. Adding a type is a parameters model in :mod:`services.jobs.params`, an entry
there, its disk check in :mod:`services.store.checks`, and its function and entry point below.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
from pydantic import BaseModel

from services.errors import Conflict, SpotterError, Unavailable
from services.jobs.params import ActiveLearningParams, EvaluateParams, ExportParams, SweepParams, TrainParams
from services.jobs.queues import redis_connection
from services.jobs.types import JOB_TYPES
from services.store.datasets.report import problems_table, render_text, summary_table
from services.store.datasets.request import ImportRequest
from services.store.datasets.storage import DatasetStore
from services.store.runs import RunStore
from services.store.traffic_sample import SampleStore
from services.training.datasets.importer import Progress, import_dataset
from services.training.results import EvaluationReport, ExportResult, JobResult, SweepResult, TrainResult
from services.worker.config import WorkerSettings
from services.worker.context import worker_settings
from services.worker.progress import JobRun, finish, job_run

if TYPE_CHECKING:
    from rq.job import Job

    from services.training.pipeline import Reporter

logger = logging.getLogger(__name__)


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


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a job's function gets besides its parameters: where it reports (the job's
    :class:`~services.worker.progress.JobRun`, or one that also moves a progress bar), the settings, and the RQ job
    (``None`` when the job runs in the CLI's process)."""

    reporter: Reporter
    settings: WorkerSettings
    job: Job | None = None


JobFunction = Callable[[Any, JobContext], JobResult | dict[str, Any]]
"""``(checked params, context) -> the job's result``."""


def _claim_run(name: str, context: JobContext) -> None:
    """Refuse to train a run another live job is training; otherwise mark it as this job's."""
    from services.jobs.chains import live_owner

    store = RunStore(context.settings.data_dir)
    if context.job is not None:
        owner = live_owner(context.job.connection, store.owner(name), exclude=context.reporter.id)
        if owner is not None:
            raise Conflict(f"run {name!r} is being trained by job {owner}")
    store.claim(name, context.reporter.id)


def train(params: TrainParams, context: JobContext) -> TrainResult:
    """Train (or resume) a run; artifacts: ``log.txt``, ``metrics.json``, ``training_curve.png``, ``result.json``."""
    assert params.run is not None
    _claim_run(params.run, context)
    from services.training import pipeline

    return pipeline.train(params, context.reporter, context.settings.data_dir, context.settings.model_root)


def evaluate(params: EvaluateParams, context: JobContext) -> EvaluationReport:
    """Evaluate a run or a published version; artifacts: ``evaluation.json``, ``pr_curve.png`` or
    ``confusion_matrix.png``."""
    from services.training import pipeline

    return pipeline.evaluate(params, context.reporter, context.settings.data_dir, context.settings.model_root)


def export(params: ExportParams, context: JobContext) -> ExportResult:
    """Export a complete run through the gate and publish it; artifacts: ``gate.json``, ``warmup.json``."""
    from services.training import pipeline

    traffic = _traffic_sample(params, context)
    return pipeline.export(
        params, context.reporter, context.settings.data_dir, context.settings.model_root, traffic=traffic
    )


def _traffic_sample(params: ExportParams, context: JobContext) -> list[bytes] | None:
    """The model's sample of real canvases for the export's warmup (None when its ``warmup`` uses none).

    With ``auto``, a Redis that can't be reached means synthetic warmup (logged); with ``traffic`` the job fails.
    """
    if params.warmup not in ("auto", "traffic"):
        return None
    job = context.job
    own = job is None  # spotter export --local: no RQ connection to borrow
    connection = redis_connection(context.settings.redis_url) if job is None else job.connection
    try:
        return SampleStore(connection).read(params.model).tensors
    except redis.RedisError as exc:
        if params.warmup == "traffic":
            raise Unavailable(f"the traffic sample of {params.model!r} can't be read from Redis: {exc}") from exc
        logger.warning("the traffic sample of %s can't be read (%s): synthetic warmup", params.model, exc)
        return None
    finally:
        if own:
            connection.close()


def active_learning(params: ActiveLearningParams, context: JobContext) -> dict[str, Any]:
    """Grow a dataset from a pool round by round; artifacts: ``active_learning.json``, ``rounds.png``,
    ``problems.json``, ``round-N/`` (review list, contact sheet, VOC folder; training, evaluation and gate files).
    With ``predict_via: gateway`` it predicts through the settings' gateway, and closes that client at the end.
    """
    from services.training import active_learning as al

    settings = context.settings
    if params.predict_via != "gateway":
        return al.run(params, context.reporter, settings.data_dir, settings.model_root)
    from services.training.pool_predict import gateway_predictor

    predictor = gateway_predictor(settings.gateway_url, settings.gateway_api_key, params)
    try:
        return al.run(params, context.reporter, settings.data_dir, settings.model_root, predict=predictor)
    finally:
        predictor.close()


def sweep(params: SweepParams, context: JobContext) -> SweepResult:
    """A sweep's report, after its rows (their train and evaluate jobs, planned with it: their ids are in its
    ``meta["sweep"]``): each row's export measured, the table and the plot; artifacts: ``sweep.json``, ``sweep.md``,
    ``sweep.csv``, ``sweep.png``."""
    from services.training.sweep import report

    meta = context.job.meta if context.job is not None else {}
    rows = list((meta.get("sweep") or {}).get("rows") or [])
    return report(params, rows, context.reporter, context.settings.data_dir)


JOB_FUNCTIONS: Mapping[str, JobFunction] = {
    "train": train,
    "evaluate": evaluate,
    "export": export,
    "active-learning": active_learning,
    "sweep": sweep,
}
"""The function that does the work of each job type of :data:`services.jobs.types.JOB_TYPES`."""


def execute(
    job_type: str,
    params: BaseModel | dict[str, Any],
    settings: WorkerSettings,
    *,
    reporter: Callable[[JobRun], Reporter] = lambda run: run,
) -> dict[str, Any]:
    """Run a job of the jobs API in this process, the one way there is (the worker's entry points below and
    ``spotter ... --local``, :mod:`services.worker.local`, both come here): inside
    :func:`~services.worker.progress.job_run`, its parameters parsed by its type's model, its function of
    :data:`JOB_FUNCTIONS` called with a :class:`JobContext` (``reporter`` wraps the job's run, to show its progress
    elsewhere too), its typed result turned into the record's JSON and written to ``result.json``
    (:func:`~services.worker.progress.finish`). The result as JSON."""
    model = JOB_TYPES[job_type].params
    assert model is not None
    with job_run(job_type, settings.data_dir) as run:
        checked = model.model_validate(params)
        result = JOB_FUNCTIONS[job_type](checked, JobContext(reporter(run), settings, run.job))
        return finish(run, result.to_json() if isinstance(result, JobResult) else result)


def train_job(body: dict[str, Any]) -> dict[str, Any]:
    """RQ's entry point of a train job (see :func:`train`)."""
    return execute("train", body["params"], worker_settings())


def evaluate_job(body: dict[str, Any]) -> dict[str, Any]:
    """RQ's entry point of an evaluate job (see :func:`evaluate`)."""
    return execute("evaluate", body["params"], worker_settings())


def export_job(body: dict[str, Any]) -> dict[str, Any]:
    """RQ's entry point of an export job (see :func:`export`)."""
    return execute("export", body["params"], worker_settings())


def sweep_job(body: dict[str, Any]) -> dict[str, Any]:
    """RQ's entry point of a sweep's report job (see :func:`sweep`)."""
    return execute("sweep", body["params"], worker_settings())


def active_learning_job(body: dict[str, Any]) -> dict[str, Any]:
    """RQ's entry point of an active-learning job (see :func:`active_learning`)."""
    return execute("active-learning", body["params"], worker_settings())
