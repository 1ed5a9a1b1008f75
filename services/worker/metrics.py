"""The worker's Prometheus metrics (names in docs/architecture.md, meaning in docs/observability.md), served by
``spotter worker`` on ``SPOTTER_WORKER_METRICS_PORT``.

Where each number comes from, given that RQ forks a work-horse per job:

- ``spotter_jobs_total`` and ``spotter_job_duration_seconds`` are recorded by the worker's own, long-lived process
  once the horse has ended (:func:`record_job`, called from :mod:`services.worker.worker`), with the outcome read
  back from Redis. The horse never touches them, so nothing is lost when it exits or is killed, and no
  multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) is needed. Each worker process counts the jobs it ran: sum
  them over instances (``sum by (type, outcome)``); a restart starts from zero, which ``rate``/``increase`` handle.
- ``spotter_queue_jobs`` and ``spotter_workers_alive`` describe the whole system, so they are read from Redis when
  scraped (RQ's queue and registries, its worker registry). Every worker reports the same values: aggregate them
  with ``max``, never ``sum``.

A job that dies with its worker (the machine went away) is never counted by ``spotter_jobs_total``: no process is
left to count it. RQ marks it failed (abandoned) later, and it shows in ``spotter_queue_jobs{state="failed"}``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import redis
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from rq import worker_registration
from rq.job import JobStatus

from services.jobs.queues import ALL_QUEUES, get_queue
from services.jobs.types import ALL_TYPES

logger = logging.getLogger(__name__)

OUTCOMES = ("finished", "failed", "rejected", "stopped", "canceled", "retried")
"""``finished``; ``failed`` (the system's fault: an unexpected error, a killed or timed-out job, not retried any
more); ``rejected`` (the job's input: a :class:`~services.errors.SpotterError`, never retried); ``stopped`` and
``canceled`` (on request); ``retried`` (failed, and queued to run again)."""

# Error codes that are not the input's fault (see services.worker.progress.error_info and services.worker.callbacks).
_SYSTEM_ERRORS = frozenset({"internal", "killed", "abandoned", "stopped"})
_ENDED = {
    JobStatus.FINISHED: "finished",
    JobStatus.FAILED: "failed",
    JobStatus.STOPPED: "stopped",
    JobStatus.CANCELED: "canceled",
}

# Not in the default registry: worker_registry() registers them with the Redis collector in the worker's own registry.
JOBS_TOTAL = Counter(
    "spotter_jobs_total",
    "Jobs that ended, by type and outcome (the ones this worker process ran).",
    ["type", "outcome"],
    registry=None,
)
JOB_DURATION = Histogram(
    "spotter_job_duration_seconds",
    "Wall time of a job's run in its work-horse, by type and outcome.",
    ["type", "outcome"],
    # Imports take seconds to minutes, training minutes to hours.
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 43200),
    registry=None,
)


def job_outcome(status: JobStatus | None, meta: Mapping[str, Any]) -> str:
    """The ``outcome`` label of a job whose run just ended, from its RQ status and its ``meta["error"]``."""
    outcome = _ENDED.get(status) if status is not None else None
    if outcome is None:
        return "retried"  # queued or scheduled again by RQ's retry
    if outcome == "failed":
        error = meta.get("error")
        code = error.get("code") if isinstance(error, Mapping) else None
        if code is not None and code not in _SYSTEM_ERRORS:
            return "rejected"
    return outcome


def record_job(job_type: str, outcome: str, seconds: float) -> None:
    """Count one job run that ended (called in the worker's own process, after its work-horse)."""
    JOBS_TOTAL.labels(job_type, outcome).inc()
    JOB_DURATION.labels(job_type, outcome).observe(seconds)


def _initialise_series() -> None:
    """Create the known series at 0: a series born with its first job hides that job from ``rate``/``increase``."""
    for job_type in ALL_TYPES:  # every type's series exists from the start, so increase() sees its first job
        for outcome in OUTCOMES:
            JOBS_TOTAL.labels(job_type, outcome)
        for outcome in ("finished", "failed", "rejected"):  # the durations worth a percentile
            JOB_DURATION.labels(job_type, outcome)


def live_workers(connection: redis.Redis, keys: Iterable[str]) -> int:
    """How many of these RQ worker keys belong to a live worker: the key exists with an expiry (heartbeats keep
    pushing it back) and holds no death date.

    A worker killed without a word stays in RQ's set until its key expires; a key without an expiry is a ghost
    (written by a process that outlived its worker, e.g. an orphaned work-horse counting its job) and never a live
    worker, since every heartbeat of a live one sets the expiry.
    """
    keys = sorted(keys)
    if not keys:
        return 0
    with connection.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.pttl(key)
            pipe.hexists(key, "death")
        answers = pipe.execute()
    return sum(1 for ttl, dead in zip(answers[::2], answers[1::2], strict=True) if ttl > 0 and not dead)


class RedisCollector(Collector):
    """``spotter_queue_jobs{queue,state}`` and ``spotter_workers_alive{queue}``, read from Redis when scraped.

    Only reads: registry counts are taken without RQ's clean-up (which would fail abandoned jobs and run their
    callbacks inside a scrape); the workers' own maintenance does that.
    """

    def __init__(self, connection: redis.Redis, queue_names: Sequence[str] = ALL_QUEUES) -> None:
        self.connection = connection
        self.queue_names = list(queue_names)

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "spotter_queue_jobs",
            "Jobs per queue and state, from Redis (every worker reports the same).",
            labels=["queue", "state"],
        )
        alive = GaugeMetricFamily(
            "spotter_workers_alive",
            "Workers listening on the queue whose heartbeat is current, from Redis (every worker reports the same).",
            labels=["queue"],
        )
        try:
            for name in self.queue_names:
                queue = get_queue(name, self.connection)
                registries = {
                    "started": queue.started_job_registry,
                    "failed": queue.failed_job_registry,
                    "finished": queue.finished_job_registry,
                    "deferred": queue.deferred_job_registry,
                    "scheduled": queue.scheduled_job_registry,
                    "canceled": queue.canceled_job_registry,
                }
                jobs.add_metric([name, "queued"], queue.count)
                for state, registry in registries.items():
                    jobs.add_metric([name, state], registry.get_job_count(cleanup=False))
                alive.add_metric([name], live_workers(self.connection, worker_registration.get_keys(queue=queue)))
        except redis.RedisError as exc:
            # No data rather than a failed scrape: the series go stale, and the gateway's own metrics stay.
            logger.warning("worker metrics: Redis did not answer: %s", exc)
            return
        yield jobs
        yield alive


def worker_registry(connection: redis.Redis, queue_names: Sequence[str] = ()) -> CollectorRegistry:
    """The worker's metrics: job counters and durations, and the jobs and live workers of every queue.

    Args:
        connection: the worker's Redis.
        queue_names: the queues this worker listens to. Every Spotter queue is described anyway, whatever this
            worker listens to, so that a queue nobody serves shows ``spotter_workers_alive 0``.
    """
    _initialise_series()
    registry = CollectorRegistry()
    registry.register(JOBS_TOTAL)
    registry.register(JOB_DURATION)
    registry.register(RedisCollector(connection, list(dict.fromkeys([*ALL_QUEUES, *queue_names]))))
    return registry


def serve_metrics(port: int, connection: redis.Redis, queue_names: Sequence[str] = ()) -> bool:
    """Serve :func:`worker_registry` on ``port`` from a daemon thread of the worker's process.

    The listening socket lives in this process only: every process forked from it (work-horses, RQ's scheduler)
    closes its inherited copy at once, so no child can hold the port after the worker is gone.

    Returns False (and logs why) when the port is taken: the worker still works, and Prometheus shows its target
    down, which is what an operator needs to see.
    """
    try:
        server, _thread = start_http_server(port, registry=worker_registry(connection, queue_names))
    except OSError as exc:
        logger.error("worker metrics: cannot listen on port %d: %s", port, exc)
        return False
    os.register_at_fork(after_in_child=server.socket.close)
    logger.info("worker metrics on port %d", port)
    return True
