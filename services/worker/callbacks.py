"""RQ callbacks every Spotter job is enqueued with, so a job that ends badly always says why in ``meta["error"]``.

- :func:`on_failure` also runs when RQ finds a job *abandoned* (its worker died: no heartbeat for
  ``heartbeat_grace_seconds`` past ``job_monitoring_interval``), in whichever worker cleans RQ's started registry;
  the job function never got to record anything then.
- :func:`on_stopped` runs in the worker when a job was stopped on request (``DELETE /v1/jobs/{id}``).

Both only touch ``meta`` (the process running them may not share the worker's data folder). The worker writes
``result.json`` from it (see :mod:`services.worker.worker`).
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any

from redis import Redis
from rq.exceptions import AbandonedJobError
from rq.job import Job

from services.jobs.public import strip_paths
from services.worker.context import worker_settings
from services.worker.progress import will_retry

logger = logging.getLogger(__name__)


def record_error(job: Job, code: str, message: str) -> None:
    """Put ``{"code", "message"}`` in the job's ``meta["error"]`` unless the job already recorded its own error.

    The stage is ``stopped``, ``retrying`` (RQ runs it again: it has retries left) or ``failed``: a job waiting for
    its retry never shows ``failed``.
    """
    meta: dict[str, Any] = job.get_meta(refresh=True)
    if "error" in meta:
        return
    settings = worker_settings()
    message = strip_paths(message, (settings.data_dir, settings.model_root))
    meta["error"] = {"code": code, "message": message}
    meta["stage"] = "stopped" if code == "stopped" else "retrying" if will_retry(job) else "failed"
    meta["message"] = message
    job.save_meta()  # type: ignore[no-untyped-call]


def on_failure(
    job: Job,
    connection: Redis,
    exc_type: type[BaseException] | None,
    exc_value: BaseException | None,
    tb: TracebackType | None,
) -> None:
    """A job failed; record why if it could not (abandoned by a dead worker, killed before it could)."""
    if exc_type is not None and issubclass(exc_type, AbandonedJobError):
        logger.warning("job %s was abandoned: its worker stopped sending heartbeats", job.id)
        record_error(
            job,
            "abandoned",
            "the worker running this job died or lost Redis (no heartbeat); the job was given up"
            + (" and will run again" if job.retries_left else ""),
        )
        if not job.retries_left:
            from services.jobs.chains import cancel_dependents

            cancel_dependents(job, f"job {job.id} before it was abandoned")
    else:
        name = exc_type.__name__ if exc_type is not None else "failure"
        record_error(job, "internal", f"{name}: {exc_value}")


def on_stopped(job: Job, connection: Redis) -> None:
    """A job was stopped on request."""
    record_error(job, "stopped", "the job was stopped on request")
