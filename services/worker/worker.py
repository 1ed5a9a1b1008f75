"""Spotter's RQ worker class, and what its own process does around each job.

:class:`SpotterWorker` is RQ's forking ``Worker`` (one work-horse process per job, so TensorFlow lives and dies with
the job and the worker's process stays TensorFlow-free). After each job, in the worker's process:

- the job's count and duration go to the metrics;
- a job that ended failed or stopped without a ``result.json`` (its horse was killed, it was stopped) gets one from
  ``meta["error"]``, so every ended job has its result file;
- once a job has ended for good (not to be retried), what it leaves in the data folder goes: its upload
  (``uploads/<id>``) and any staging folder named for it;
- a job of a chain (train -> evaluate -> export) that failed or was stopped has the jobs after it canceled.

A killed worker takes its children with it (:mod:`services.worker.children`); its job is given up as abandoned by
the next idle worker's check (see :class:`SpotterWorker`). What it leaves in the data folder is swept when a worker
starts: uploads and staging folders whose job has ended, or that no job claims and are stale.
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
from redis.client import Pipeline
from rq import Queue, Worker, worker_registration
from rq.job import Job, JobStatus
from rq.job_lifecycle import call_exception_handlers

from services.errors import SpotterError
from services.files import atomic_write_json
from services.jobs.queues import SERIALIZER, fetch_job
from services.jobs.records import job_dir
from services.store.datasets.storage import DatasetStore
from services.worker.callbacks import record_error
from services.worker.children import guard_children
from services.worker.context import worker_settings
from services.worker.metrics import job_outcome, record_job
from services.worker.progress import RESULT_FILE

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
    """RQ's forking worker with Spotter's serializer, a handler for killed work-horses and per-job bookkeeping.

    Liveness (see docs/datasets.md, "Killed worker"): the worker's children die with it (:mod:`.children`); its
    Redis record and its job's heartbeat expire ``heartbeat_grace`` seconds after a heartbeat that did not come
    (RQ's default is 60 s, and 8 minutes for an idle worker's record); an idle worker wakes every
    ``job_monitoring_interval`` and then gives up the jobs of dead workers through RQ's own clean-up of the started
    registries (each abandoned job failed, or retried if it has retries left), not only at its full maintenance.
    """

    def __init__(
        self, queues: list[Queue], connection: redis.Redis, data_dir: Path, heartbeat_grace: int = 20, **kwargs: Any
    ) -> None:
        self.heartbeat_grace = max(1, heartbeat_grace)
        super().__init__(
            queues, connection=connection, serializer=SERIALIZER, work_horse_killed_handler=on_horse_killed, **kwargs
        )
        self.data_dir = data_dir
        self._abandoned_checked_at = 0.0

    def work(self, *args: Any, **kwargs: Any) -> bool:
        with guard_children():
            return bool(super().work(*args, **kwargs))

    def execute_job(self, job: Job, queue: Queue) -> None:
        started = time.monotonic()
        try:
            super().execute_job(job, queue)
        finally:
            after_job(job, time.monotonic() - started, self.data_dir)

    @property
    def liveness_ttl(self) -> int:
        """Seconds the worker's record (and its job's heartbeat) lives without a heartbeat."""
        return int(self.job_monitoring_interval) + self.heartbeat_grace

    @property
    def dequeue_timeout(self) -> int:
        return max(1, min(int(self.worker_ttl) - 15, int(self.job_monitoring_interval)))

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        remaining = job.timeout - working_time if job.timeout and job.timeout > 0 else self.job_monitoring_interval
        return int(min(remaining, self.job_monitoring_interval)) + self.heartbeat_grace

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        # RQ asks for TTLs of a minute and more; a dead worker would count as alive that long.
        if pipeline is not None or self.is_horse:
            super().heartbeat(self.liveness_ttl, pipeline=pipeline)
            return
        with self.connection.pipeline() as pipe:
            pipe.exists(self.key)
            super().heartbeat(self.liveness_ttl, pipeline=pipe)
            existed = pipe.execute()[0]
        if not existed and self.birth_date is not None:
            # Stalled past the grace: another worker's clean-up may have dropped us from RQ's set; join it again.
            with self.connection.pipeline() as pipe:
                pipe.hset(self.key, mapping=self.serialize())
                worker_registration.register(self, pipe)
                pipe.expire(self.key, self.liveness_ttl)
                pipe.execute()

    @property
    def should_run_maintenance_tasks(self) -> bool:
        due = time.monotonic() - self._abandoned_checked_at >= self.job_monitoring_interval
        return bool(super().should_run_maintenance_tasks) or due

    def run_maintenance_tasks(self) -> None:
        if super().should_run_maintenance_tasks:
            super().run_maintenance_tasks()  # type: ignore[no-untyped-call]  # cleans the started registries too
        else:
            self.give_up_abandoned()
        self._abandoned_checked_at = time.monotonic()

    def give_up_abandoned(self) -> None:
        """RQ's clean-up of each queue's started registry: a job whose heartbeat expired (its worker is gone) is
        retried or failed with ``AbandonedJobError`` (our ``on_failure`` callback records ``abandoned``)."""
        for queue in self.queues:
            if queue.acquire_maintenance_lock():  # the lock RQ's own clean-up takes: never two at once
                try:
                    queue.started_job_registry.cleanup(exception_handlers=self._exc_handlers)
                finally:
                    queue.release_maintenance_lock()  # type: ignore[no-untyped-call]

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        if exc_info and isinstance(exc_info[1], SpotterError):
            # The job's input: job_run logged it in one line; no traceback (RQ keeps it in the job's result).
            call_exception_handlers(self._exc_handlers, job, *exc_info)
            return
        super().handle_exception(job, *exc_info)


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
            body = {"job_id": job.id, "type": meta.get("type"), "status": status.value, "error": error}
            atomic_write_json(result, body)
    if status in ENDED:
        remove_job_leftovers(data_dir, job.id)
    if status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
        from services.jobs.chains import cancel_dependents

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


def sweep_leftovers(data_dir: Path, connection: redis.Redis, stale_hours: float) -> int:
    """Remove uploads and staging folders whose job has ended, or that no job claims and are older than
    ``stale_hours`` (a CLI import may be writing one right now: young ones stay); how many were removed."""
    candidates = [(p, p.name) for p in (data_dir / "uploads").glob("*")] if (data_dir / "uploads").is_dir() else []
    candidates += DatasetStore(data_dir).staged()
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
        heartbeat_grace=settings.heartbeat_grace_seconds,
        name=name,
        job_monitoring_interval=settings.job_monitoring_interval,
        maintenance_interval=settings.maintenance_interval,
    )
