"""Submitting and cancelling jobs of the jobs API, and keeping chains honest (TensorFlow-free: the gateway uses it).

A submission is checked against the disk (:func:`services.store.checks.plan`) before anything is queued, then
becomes a *chain* (:func:`services.jobs.types.chain_of`): jobs enqueued in order, each with RQ's ``depends_on`` on
the one before, so RQ starts the next only when the previous one finished. Every job of a chain carries the chain in
its ``meta`` (``chain``: the ids in order, ``depends_on``: the one before). When a job of a chain ends without
finishing (failed, stopped, canceled, abandoned), the jobs after it are canceled with a reason, rather than left
deferred forever. A sweep (:mod:`services.store.sweeps`) is not a line: each row's train and evaluate jobs are a
chain of their own ending with the sweep's report, which waits for every row (``depends_on`` lists them), so the
rows run side by side on as many workers as there are and a row that fails cancels the report.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from pydantic import BaseModel
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation
from rq.job import Job, JobStatus

from services.errors import Conflict, JobNotFound
from services.jobs.params import params_json
from services.jobs.queues import SERIALIZER, TRAIN_QUEUE, enqueue, fetch_job, get_queue
from services.jobs.types import JOB_TYPES

logger = logging.getLogger(__name__)

WAITING = {JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED, JobStatus.CREATED}
LIVE = {*WAITING, JobStatus.STARTED}
ENDED = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}
RETRY_INTERVALS = [10, 60]


@dataclass(frozen=True, slots=True)
class PlannedJob:
    """One checked job of a chain: its type, parameters and id, and for a train job the id of the job that last
    claimed its run (read from the run's folder when it was planned; :func:`submit` asks Redis whether it is live).

    A chain is a line unless its jobs say otherwise (a sweep's rows run side by side): ``after`` names the jobs it
    waits for (default: the one before it), ``chain`` the ids its record shows and whose later members are canceled
    when it ends badly (default: the whole submission), ``meta`` more fields for its ``meta``.
    """

    type: str
    params: BaseModel
    job_id: str
    run_claimed_by: str | None = None
    after: tuple[str, ...] | None = None
    chain: tuple[str, ...] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def waits_for(self, before: str | None) -> str | list[str | Job] | None:
        """The job ids it depends on (``before``: the job before it in the submission)."""
        if self.after is None:
            return before
        if len(self.after) <= 1:
            return self.after[0] if self.after else None
        return list(self.after)


def live_owner(connection: redis.Redis, owner: str | None, *, exclude: str = "") -> str | None:
    """``owner`` (the job that claimed a run) if it is live (queued or running) and not ``exclude``."""
    if owner and owner != exclude:
        try:
            if fetch_job(owner, connection).get_status() in LIVE:
                return owner
        except JobNotFound:  # expired: not live
            pass
    return None


def submit(connection: redis.Redis, planned: Sequence[PlannedJob]) -> list[Job]:
    """Enqueue a planned chain (each job after the one before); on a Redis failure part-way, what was enqueued is
    removed again, so a submission is queued whole or not at all.

    Raises:
        Conflict: a train job names a run that a live job is training.
    """
    for job in planned:
        run = getattr(job.params, "run", None)
        if job.type == "train" and run:
            owner = live_owner(connection, job.run_claimed_by) or _queued_trainer(connection, run)
            if owner is not None:
                raise Conflict(f"run {run!r} is already being trained by job {owner}; wait for it or cancel it")
    ids = [job.job_id for job in planned]
    enqueued: list[Job] = []
    try:
        for index, job in enumerate(planned):
            kind = JOB_TYPES[job.type]
            body = params_json(job.params)
            parent = job.waits_for(ids[index - 1] if index else None)
            enqueued.append(
                enqueue(
                    connection,
                    kind.queue,
                    kind.func,
                    {"params": body},
                    job_type=job.type,
                    job_id=job.job_id,
                    timeout=int(body.get("timeout_seconds", 3600)),
                    retries=1,
                    retry_intervals=RETRY_INTERVALS,
                    description=f"{job.type} {body.get('run') or body.get('model') or ''}".strip(),
                    meta={**job.meta, "params": body, "chain": list(job.chain or ids), "depends_on": parent},
                    depends_on=parent,
                )
            )
    except redis.RedisError:
        for job_ in enqueued:
            try:
                job_.cancel()
                job_.delete()
            except redis.RedisError:
                logger.warning("could not remove job %s of a half-submitted chain", job_.id)
        raise
    logger.info("submitted %s", ", ".join(f"{j.type} {j.job_id}" for j in planned))
    return enqueued


def _queued_trainer(connection: redis.Redis, run: str) -> str | None:
    """A train job naming ``run`` that is waiting (it has not claimed the run yet)."""
    queue = get_queue(TRAIN_QUEUE, connection)
    waiting = [
        *queue.get_job_ids(),
        *queue.deferred_job_registry.get_job_ids(),
        *queue.scheduled_job_registry.get_job_ids(),
    ]
    for job in Job.fetch_many(waiting, connection=connection, serializer=SERIALIZER):
        if job is not None and job.meta.get("type") == "train" and (job.meta.get("params") or {}).get("run") == run:
            return job.id
    return None


def cancel_dependents(job: Job, reason: str) -> list[str]:
    """Cancel the jobs after ``job`` in its chain that have not started; their ids."""
    chain: list[str] = list(job.meta.get("chain") or [])
    if job.id not in chain:
        return []
    canceled = []
    for later in chain[chain.index(job.id) + 1 :]:
        try:
            dependent = fetch_job(later, job.connection)
        except JobNotFound:
            continue
        if dependent.get_status() not in WAITING:
            continue
        _mark_canceled(dependent, "dependency_failed", reason)
        canceled.append(later)
    if canceled:
        logger.info("job %s: canceled the jobs after it (%s): %s", job.id, ", ".join(canceled), reason)
    return canceled


def _mark_canceled(job: Job, code: str, message: str) -> None:
    try:
        job.cancel()
    except InvalidJobOperation:
        return  # canceled meanwhile
    meta: dict[str, Any] = job.get_meta(refresh=True)
    meta.update(stage="canceled", message=message, error={"code": code, "message": message})
    job.save_meta()  # type: ignore[no-untyped-call]


def cancel(connection: redis.Redis, job_id: str) -> JobStatus:
    """Cancel a job: a waiting one is canceled, a running one is stopped (RQ's stop command kills its work-horse);
    the jobs after it in its chain are canceled too. Its status before.

    Raises:
        JobNotFound: no such job.
        Conflict: it has already ended.
    """
    job = fetch_job(job_id, connection)
    status = job.get_status()
    if status in ENDED or status is None:
        raise Conflict(f"job {job_id} has already ended ({status.value if status else 'unknown'}): nothing to cancel")
    if status == JobStatus.STARTED:
        send_stop_job_command(connection, job_id, serializer=SERIALIZER)
    else:
        _mark_canceled(job, "canceled", "canceled on request")
    cancel_dependents(job, f"job {job_id} before it was canceled")
    return status
