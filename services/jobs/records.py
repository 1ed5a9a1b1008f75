"""Jobs as the jobs API shows them: one record per job from RQ and the job's ``meta`` and artifact folder
(TensorFlow-free; the gateway reads these in a worker thread).

A record: ``id``, ``type``, ``state`` (RQ's status: ``queued``, ``deferred``, ``scheduled``, ``started``,
``finished``, ``failed``, ``stopped``, ``canceled``), ``stage`` and ``message``, ``progress`` (``percent``,
``epoch``/``epochs``, ``step``/``steps``), ``metrics`` so far, ``counts``, ``params``, the chain (``chain``,
``depends_on``), times, ``error`` (when it did not finish), ``result`` (when it did), and ``artifacts`` (name, size,
URL and path, relative to the data folder, of each file under ``data/jobs/<id>/``). No field carries an
absolute path of the server (:mod:`services.jobs.public`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis
from rq.job import Job, JobStatus

from services.errors import InvalidParameter, NotFound
from services.jobs.public import public
from services.jobs.queues import ALL_QUEUES, SERIALIZER, get_queue

STATES = ("queued", "deferred", "scheduled", "started", "finished", "failed", "stopped", "canceled")
MAX_LIST = 500
SCAN_PER_REGISTRY = 2000
"""Listing reads at most this many of the newest ids per queue registry (finished jobs stay a week)."""


def job_dir(data_dir: Path, job_id: str) -> Path:
    """A job's artifact folder: ``<data_dir>/jobs/<id>/``."""
    return data_dir / "jobs" / job_id


def _iso(value: Any) -> str | None:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z") if value is not None else None


ARTIFACT_LISTING_DEPTH = 2
"""Listed: a job's files and those one folder down (``round-1/review.json``); deeper files (a VOC export's images)
are served by their path but not listed."""


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def artifacts(data_dir: Path, job_id: str) -> list[dict[str, Any]]:
    """The files of a job's artifact folder and its sub-folders (hidden temporary files left out); each ``path`` is
    relative to the data folder."""
    folder = job_dir(data_dir, job_id)
    if not folder.is_dir():
        return []
    found = []
    for p in sorted(folder.rglob("*")):
        relative = p.relative_to(folder)
        if len(relative.parts) > ARTIFACT_LISTING_DEPTH or _hidden(relative) or p.is_symlink() or not p.is_file():
            continue
        name = relative.as_posix()
        found.append(
            {
                "name": name,
                "bytes": p.stat().st_size,
                "url": f"/v1/jobs/{job_id}/artifacts/{name}",
                "path": p.relative_to(data_dir).as_posix(),
            }
        )
    return found


def artifact_path(data_dir: Path, job_id: str, name: str) -> Path:
    """The file ``name`` (a relative path with ``/``) of a job's artifacts, never a path out of its folder.

    Raises:
        NotFound: no such artifact (or a name that is not a plain relative path: ``..``, hidden parts, a symlink).
    """
    folder = job_dir(data_dir, job_id)
    parts = name.split("/")
    if "\\" in name or "\x00" in name or any(part in ("", ".", "..") or part.startswith(".") for part in parts):
        raise NotFound(f"job {job_id} has no artifact {name!r}")
    path = folder.joinpath(*parts)
    if not path.is_file() or path.is_symlink() or not path.resolve().is_relative_to(folder.resolve()):
        raise NotFound(f"job {job_id} has no artifact {name!r}")
    return path


def record(
    job: Job, data_dir: Path, *, status: JobStatus | None = None, model_root: Path | None = None
) -> dict[str, Any]:
    """One job's record (see the module's text), with no absolute path of the server in it: paths are relative to
    the data folder (``jobs/<id>/log.txt``) or to ``model_root`` (``demo/3``), others cut to their last part."""
    state = status or job.get_status(refresh=False)
    meta = job.meta or {}
    body: dict[str, Any] = {
        "id": job.id,
        "type": meta.get("type"),
        "state": state.value if state is not None else "unknown",
        "stage": meta.get("stage"),
        "message": meta.get("message", ""),
        "progress": {
            "percent": meta.get("progress", 0.0),
            **{k: meta[k] for k in ("epoch", "epochs", "step", "steps") if k in meta},
        },
        "metrics": meta.get("metrics", {}),
        "counts": meta.get("counts", {}),
        "params": meta.get("params"),
        "chain": meta.get("chain", [job.id]),
        "depends_on": meta.get("depends_on"),
        "queue": job.origin,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "ended_at": _iso(job.ended_at),
        "error": meta.get("error"),
        "result": None,
        "artifacts": artifacts(data_dir, job.id),
        "status_url": f"/v1/jobs/{job.id}",
    }
    if state == JobStatus.FINISHED:
        body["result"] = job.return_value()
    elif state == JobStatus.STARTED and _heartbeat_expired(job):
        body["stage"] = "abandoned"
        body["message"] = (
            "the worker running this job stopped sending heartbeats; the next worker gives it up (retried or failed)"
        )
    roots = [data_dir] if model_root is None else [data_dir, model_root]
    for key in ("message", "error", "result", "params"):  # what jobs wrote (not the URLs built here)
        body[key] = public(body[key], roots)
    return body


def _heartbeat_expired(job: Job) -> bool:
    """Whether a started job's heartbeat has expired (its worker is gone), read without RQ's clean-up (a reader
    changes nothing; the workers give the job up)."""
    if job.origin not in ALL_QUEUES:
        return False
    try:
        return job.id in get_queue(job.origin, job.connection).started_job_registry.get_expired_job_ids()
    except redis.RedisError:
        return False


def _candidate_ids(connection: redis.Redis) -> list[str]:
    ids: list[str] = []
    for name in ALL_QUEUES:
        queue = get_queue(name, connection)
        ids += queue.get_job_ids()
        for registry in (
            queue.started_job_registry,
            queue.deferred_job_registry,
            queue.scheduled_job_registry,
            queue.finished_job_registry,
            queue.failed_job_registry,
            queue.canceled_job_registry,
        ):
            ids += registry.get_job_ids(start=0, end=SCAN_PER_REGISTRY - 1, desc=True, cleanup=False)
    return list(dict.fromkeys(ids))


def list_records(
    connection: redis.Redis,
    data_dir: Path,
    *,
    job_type: str | None = None,
    state: str | None = None,
    limit: int = 50,
    model_root: Path | None = None,
) -> list[dict[str, Any]]:
    """Jobs of every queue, newest first, filtered by type and state, at most ``limit`` (up to :data:`MAX_LIST`).

    Raises:
        InvalidParameter: an unknown state or a limit out of range.
    """
    if state is not None and state not in STATES:
        raise InvalidParameter(f"unknown state {state!r}; states: {', '.join(STATES)}")
    if not 1 <= limit <= MAX_LIST:
        raise InvalidParameter(f"limit must be 1..{MAX_LIST}, got {limit}")
    jobs = [j for j in Job.fetch_many(_candidate_ids(connection), connection=connection, serializer=SERIALIZER) if j]
    chosen = []
    for job in sorted(jobs, key=lambda j: j.created_at.timestamp() if j.created_at else 0.0, reverse=True):
        if job_type is not None and (job.meta or {}).get("type") != job_type:
            continue
        status = job.get_status(refresh=False)
        if state is not None and (status.value if status else None) != state:
            continue
        chosen.append(record(job, data_dir, status=status, model_root=model_root))
        if len(chosen) >= limit:
            break
    return chosen
