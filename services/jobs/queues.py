"""Spotter's RQ queues, and the one way to enqueue and fetch its jobs.

Two queues: ``spotter-data`` for imports (short, I/O-bound) and ``spotter-train`` for training, evaluation, export and
active learning (long, CPU-bound), so a worker can be given only one of them. Jobs are stored with RQ's JSON
serializer: arguments, ``meta`` and results are plain JSON that the gateway reads back without unpickling anything,
so every producer and reader must go through :func:`get_queue` / :func:`fetch_job` (or pass
``serializer=SERIALIZER``).

Every job's ``meta`` starts as :func:`initial_meta` and is kept up to date by the job (see
:mod:`services.worker.progress`): ``type``, ``progress`` (percent), ``stage``, ``message``, ``counts``, ``error``
(when it failed), ``artifacts`` (the job's folder under ``data/jobs/``).
"""

from __future__ import annotations

from typing import Any

import redis
from rq import Callback, Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer

from services.errors import JobNotFound

DATA_QUEUE = "spotter-data"
TRAIN_QUEUE = "spotter-train"
ALL_QUEUES = (DATA_QUEUE, TRAIN_QUEUE)
SERIALIZER = JSONSerializer

ON_FAILURE = "services.worker.callbacks.on_failure"
ON_STOPPED = "services.worker.callbacks.on_stopped"

RESULT_TTL = 7 * 24 * 3600
"""Seconds a finished job (and its result) stays readable; failed jobs stay RQ's default year."""


def redis_connection(url: str) -> redis.Redis:
    """A synchronous Redis client for RQ (RQ does not take ``redis.asyncio`` clients)."""
    return redis.Redis.from_url(url)


def get_queue(name: str, connection: redis.Redis) -> Queue:
    """One of :data:`ALL_QUEUES`, with Spotter's serializer."""
    if name not in ALL_QUEUES:
        raise ValueError(f"unknown queue {name!r}; Spotter's queues are {', '.join(ALL_QUEUES)}")
    return Queue(name, connection=connection, serializer=SERIALIZER)


def initial_meta(job_type: str, **extra: Any) -> dict[str, Any]:
    """The ``meta`` a job is enqueued with, so it reads the same before and after a worker takes it."""
    return {"type": job_type, "progress": 0.0, "stage": "queued", "message": "", "counts": {}, **extra}


def enqueue(
    connection: redis.Redis,
    queue_name: str,
    func: str,
    *args: Any,
    job_type: str,
    job_id: str | None = None,
    timeout: int = 3600,
    retries: int = 1,
    retry_intervals: list[int] | None = None,
    description: str | None = None,
    meta: dict[str, Any] | None = None,
    depends_on: str | Job | list[str | Job] | None = None,
) -> Job:
    """Enqueue ``func`` (a dotted path: the enqueuing process never imports the job's code) with JSON arguments.

    Args:
        connection: a synchronous Redis client.
        queue_name: one of :data:`ALL_QUEUES`.
        func: e.g. ``"services.worker.jobs.import_dataset_job"``.
        args: JSON-able arguments.
        job_type: ``import``, ``train``, ``evaluate``, ``export``, ``active_learning``; kept in ``meta["type"]``.
        job_id: the job's id (the upload's id for imports), or a new one.
        timeout: seconds the job may run before RQ stops it.
        retries: how many times a job that fails for an unexpected reason (its worker died, Redis went away) is
            run again. Jobs that fail on bad input are not retried (see :mod:`services.worker.progress`).
        retry_intervals: seconds to wait before each retry (needs a worker started with its scheduler, which
            ``spotter worker`` does); immediate when None.
        description: shown by ``rq info``.
        meta: extra fields for ``meta`` (the job's parameters, for the jobs API).
        depends_on: jobs this one waits for (RQ dependencies: train -> evaluate -> export).
    """
    retry = Retry(max=retries, interval=retry_intervals or 0) if retries > 0 else None
    return get_queue(queue_name, connection).enqueue(
        func,
        args=args,
        job_id=job_id,
        job_timeout=timeout,
        result_ttl=RESULT_TTL,
        retry=retry,
        description=description or f"{job_type} {job_id or ''}".strip(),
        meta=initial_meta(job_type, **(meta or {})),
        depends_on=depends_on,
        # So that a job that dies without a word (abandoned, stopped) still says why in meta["error"].
        on_failure=Callback(ON_FAILURE),
        on_stopped=Callback(ON_STOPPED),
    )


def fetch_job(job_id: str, connection: redis.Redis) -> Job:
    """The job with this id.

    Raises:
        JobNotFound: no such job (or it has expired).
    """
    try:
        return Job.fetch(job_id, connection=connection, serializer=SERIALIZER)
    except (NoSuchJobError, ValueError) as exc:  # ValueError: not a valid job id at all
        raise JobNotFound(f"job {job_id!r} not found") from exc
