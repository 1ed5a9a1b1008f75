"""Spotter's RQ worker class, and what its own process does around each job.

:class:`SpotterWorker` is RQ's forking ``Worker`` (one work-horse process per job, so TensorFlow lives and dies with
the job and the worker's process stays TensorFlow-free). After each job, in the worker's process:

- the job's count and duration go to the metrics;
- a job that ended failed or stopped without a ``result.json`` (its horse was killed, it was stopped) gets one from
  ``meta["error"]``, so every ended job has its result file;
- once a job has ended for good (not to be retried), what it leaves in the data folder goes: its upload
  (``uploads/<id>``) and any staging folder named for it;
- a job of a chain (train -> evaluate -> export) that failed or was stopped has the jobs after it canceled.

What a killed worker leaves (RQ marks its job failed as abandoned later, from another process) is swept when a
worker starts: uploads and staging folders whose job has ended, or that no job claims and are stale.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import redis
from rq import Queue, Worker
from rq.job import Job, JobStatus

from services.training.datasets.storage import STAGING_PREFIX, DatasetStore
from services.worker.callbacks import record_error
from services.worker.context import worker_settings
from services.worker.metrics import job_outcome, record_job
from services.worker.progress import RESULT_FILE, job_dir, write_json
from services.worker.queues import SERIALIZER, fetch_job

logger = logging.getLogger(__name__)

ENDED = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}
LIVE = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED, JobStatus.CREATED}


def on_horse_killed(job: Job, retpid: int, ret_val: int, rusage: Any) -> None:
    """RQ's ``work_horse_killed_handler``: the job's process died without ending the job (a signal, OOM killer)."""
    if ret_val and os.WIFSIGNALED(ret_val):
        sig = os.WTERMSIG(ret_val)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        hint = " (out of memory?)" if sig == signal.SIGKILL else ""
        message = f"the job's process was killed by {name}{hint}"
    else:
        code = os.WEXITSTATUS(ret_val) if ret_val else ret_val
        message = f"the job's process exited with status {code} before the job ended"
    logger.error("job %s: %s", job.id, message)
    record_error(job, "killed", message)


class SpotterWorker(Worker):
    """RQ's forking worker with Spotter's serializer, a handler for killed work-horses and per-job bookkeeping."""

    def __init__(self, queues: list[Queue], connection: redis.Redis, data_dir: Path, **kwargs: Any) -> None:
        super().__init__(
            queues, connection=connection, serializer=SERIALIZER, work_horse_killed_handler=on_horse_killed, **kwargs
        )
        self.data_dir = data_dir

    def execute_job(self, job: Job, queue: Queue) -> None:
        started = time.monotonic()
        try:
            super().execute_job(job, queue)
        finally:
            after_job(job, time.monotonic() - started, self.data_dir)


def after_job(job: Job, seconds: float, data_dir: Path) -> None:
    """Metrics, a missing ``result.json``, and leftovers of a job that has ended (see the module's text)."""
    try:
        status = job.get_status(refresh=True)
        meta = job.get_meta(refresh=True)
    except Exception:  # the job expired or Redis went away: nothing more to record
        logger.warning("job %s: could not read its end state", job.id, exc_info=True)
        return
    record_job(str(meta.get("type", "unknown")), job_outcome(status, meta), seconds)
    if status in (JobStatus.FAILED, JobStatus.STOPPED):
        result = job_dir(data_dir, job.id) / RESULT_FILE
        if not result.exists():
            error = meta.get("error") or {"code": "internal", "message": "the job failed without a message"}
            write_json(result, {"job_id": job.id, "type": meta.get("type"), "status": status.value, "error": error})
    if status in ENDED:
        remove_job_leftovers(data_dir, job.id)
    if status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
        from services.worker.control import cancel_dependents

        try:
            cancel_dependents(job, f"job {job.id} before it ended {status.value}")
        except Exception:  # the job has ended either way; its chain is also cut by the next reader
            logger.warning("job %s: could not cancel the jobs chained after it", job.id, exc_info=True)


def remove_job_leftovers(data_dir: Path, job_id: str) -> None:
    """Remove a job's upload and staging folders (never its artifacts under ``jobs/``)."""
    upload = data_dir / "uploads" / job_id
    if upload.exists():
        shutil.rmtree(upload, ignore_errors=True) if upload.is_dir() else upload.unlink(missing_ok=True)
    DatasetStore(data_dir).remove_staging(job_id)


def _token(staged: Path) -> str:
    return staged.name[len(STAGING_PREFIX) :].rsplit("-", 1)[0]


def sweep_leftovers(data_dir: Path, connection: redis.Redis, stale_hours: float) -> int:
    """Remove uploads and staging folders whose job has ended, or that no job claims and are older than
    ``stale_hours`` (a CLI import may be writing one right now: young ones stay); how many were removed."""
    candidates = [(p, p.name) for p in (data_dir / "uploads").glob("*")] if (data_dir / "uploads").is_dir() else []
    datasets = data_dir / "datasets"
    if datasets.is_dir():
        candidates += [(p, _token(p)) for p in datasets.glob(f"*/{STAGING_PREFIX}*")]
    cutoff = time.time() - stale_hours * 3600
    removed = 0
    for path, token in candidates:
        try:
            status = fetch_job(token, connection).get_status() if token else None
        except Exception:
            status = None
        if status in LIVE:
            continue
        if status is None and path.stat().st_mtime > cutoff:
            continue
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        removed += 1
    if removed:
        logger.info("removed %d leftover uploads and staging folders", removed)
    return removed


def build_worker(queue_names: list[str], connection: redis.Redis, name: str | None = None) -> SpotterWorker:
    """A worker on ``queue_names`` with the worker settings' intervals."""
    settings = worker_settings()
    queues = [Queue(n, connection=connection, serializer=SERIALIZER) for n in queue_names]
    return SpotterWorker(
        queues,
        connection,
        settings.data_dir,
        name=name,
        job_monitoring_interval=settings.job_monitoring_interval,
        maintenance_interval=settings.maintenance_interval,
    )
