"""What every job function does around its work: progress in ``job.meta``, artifacts, and a clear end.

A job function wraps its work in :func:`job_run`::

    def train_job(body: dict) -> dict:
        with job_run("train") as run:
            ...
            run.update(progress=40.0, stage="epoch", message="epoch 4/10", epoch=4, step=400, metrics={...})
            return {"model": "demo", "version": 3}

While it runs, ``job.meta`` holds ``type``, ``progress`` (percent), ``stage``, ``message``, ``counts`` and any extra
fields the job sets (training: ``epoch``, ``step``, ``metrics``), saved at most every half second (and at every stage
change). Its artifacts go to ``data/jobs/<id>/``: ``log.txt`` (every log line of the job's process while it runs)
and ``result.json`` (``status``, the result or the ``error``, start and end times), plus whatever the job writes there.

On an exception the job ends failed, never silently: ``meta["error"]`` and ``result.json`` get
``{"code", "message", "details"?}`` (a :class:`~services.errors.SpotterError`'s own, or ``internal`` with the
exception's type and text; no absolute path of the server in it, see :mod:`services.jobs.public`), and the
exception goes on to RQ, which records the traceback. A SpotterError is the input's fault: the job is not retried
(its ``retries_left`` is set to 0) and the worker logs it in one line, without a traceback. Other exceptions are
logged with their traceback and retried as the job was enqueued to be; while a job waits for its retry its stage
(and ``result.json``'s status) is ``retrying``, never ``failed``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rq import get_current_job
from rq.job import Job

from services.errors import SpotterError
from services.files import atomic_write_json
from services.jobs.public import public
from services.jobs.records import job_dir
from services.worker.context import worker_settings

logger = logging.getLogger(__name__)

SAVE_EVERY_S = 0.5
LOG_FILE = "log.txt"
RESULT_FILE = "result.json"


def error_info(exc: BaseException) -> dict[str, Any]:
    """The ``{"code", "message", "details"?}`` of an exception, as the API shows errors: the one place job errors
    are made, so none carries the server's absolute paths (see :mod:`services.jobs.public`)."""
    info = (
        exc.to_dict()
        if isinstance(exc, SpotterError)
        else {"code": "internal", "message": f"{type(exc).__name__}: {exc}"}
    )
    settings = worker_settings()
    return dict(public(info, (settings.data_dir, settings.model_root)))


def will_retry(job: Job | None, exc: BaseException | None = None) -> bool:
    """Whether RQ runs a job that just failed again (a SpotterError never is: see :func:`job_run`)."""
    return job is not None and not isinstance(exc, SpotterError) and bool(job.retries_left)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class JobRun:
    """The running job as its function sees it: :meth:`update` progress, write artifacts under :attr:`artifacts`."""

    def __init__(self, job: Job | None, job_type: str, artifacts: Path) -> None:
        self.job = job
        self.job_type = job_type
        self.artifacts = artifacts
        self.meta: dict[str, Any] = job.meta if job is not None else {}
        self._saved_at = 0.0

    @property
    def id(self) -> str:
        return self.job.id if self.job is not None else self.artifacts.name

    def update(
        self,
        *,
        progress: float | None = None,
        stage: str | None = None,
        message: str | None = None,
        counts: dict[str, Any] | None = None,
        force: bool = False,
        **fields: Any,
    ) -> None:
        """Record progress in ``job.meta``; saved to Redis at most every half second unless the stage changes."""
        stage_changed = stage is not None and stage != self.meta.get("stage")
        if progress is not None:
            self.meta["progress"] = round(float(progress), 1)
        if stage is not None:
            self.meta["stage"] = stage
        if message is not None:
            self.meta["message"] = message
        if counts is not None:
            self.meta["counts"] = {**self.meta.get("counts", {}), **counts}
        self.meta.update(fields)
        now = time.monotonic()
        if self.job is not None and (force or stage_changed or now - self._saved_at >= SAVE_EVERY_S):
            self.job.save_meta()  # type: ignore[no-untyped-call]
            self._saved_at = now

    def write_json(self, name: str, body: Any) -> Path:
        """Write an artifact (``metrics.json``, ``problems.json``...) into the job's folder; its path."""
        return atomic_write_json(self.artifacts / name, body)


@contextmanager
def job_run(job_type: str, data_dir: Path | None = None) -> Iterator[JobRun]:
    """Run a job's body with progress, a log file and a result file (see the module's text)."""
    job = get_current_job()
    data = data_dir if data_dir is not None else worker_settings().data_dir
    job_id = job.id if job is not None else f"local-{os.getpid()}-{int(time.time())}"
    artifacts = job_dir(data, job_id)
    artifacts.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(artifacts / LOG_FILE, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(min(level, logging.INFO) if level else logging.INFO)  # the job's log has its INFO lines
    run = JobRun(job, job_type, artifacts)
    started = _now()
    run.meta.pop("error", None)  # a retried job starts clean
    run.meta["pid"] = os.getpid()  # the work-horse, for whoever must kill it
    run.update(progress=0.0, stage="started", message="", force=True, artifacts=str(artifacts), started=started)
    logger.info("job %s (%s) started", run.id, job_type)
    try:
        yield run
    except BaseException as exc:
        error = error_info(exc)
        retrying = will_retry(job, exc)
        if isinstance(exc, SpotterError):  # the input's fault: one line, no traceback, no retry
            logger.warning("job %s (%s) refused: %s: %s", run.id, job_type, error["code"], error["message"])
            if job is not None:
                job.retries_left = 0
        else:
            note = " (it will run again)" if retrying else ""
            logger.error("job %s (%s) failed%s: %s", run.id, job_type, note, error["message"], exc_info=True)
        status = "retrying" if retrying else "failed"
        run.update(stage=status, message=error["message"], error=error, force=True)
        atomic_write_json(
            artifacts / RESULT_FILE,
            {
                "job_id": run.id,
                "type": job_type,
                "status": status,
                "started": started,
                "ended": _now(),
                "error": error,
            },
        )
        raise
    else:
        logger.info("job %s (%s) finished", run.id, job_type)
        run.update(progress=100.0, stage="finished", force=True)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


def finish(run: JobRun, result: dict[str, Any]) -> dict[str, Any]:
    """Write ``result.json`` for a finished job and return the result with its artifact paths (the RQ result).

    ``result.json`` is served by the jobs API, so its paths are relative to the data folder or the model root
    (the RQ result keeps them whole for the worker's side; the API's records make them relative too).
    """
    body = {**result, "artifacts": {"dir": str(run.artifacts), "log": str(run.artifacts / LOG_FILE)}}
    shown = {"job_id": run.id, "type": run.job_type, "status": "finished", "ended": _now(), "result": body}
    roots = (run.artifacts.parent.parent, worker_settings().model_root)
    atomic_write_json(run.artifacts / RESULT_FILE, public(shown, roots))
    return body
