"""Job routes: submit a train, evaluate, export, active-learning or sweep job (``POST /v1/jobs``), list and show
jobs, cancel one, and fetch its artifacts. Every route needs an API key.

A submission is validated twice before anything is queued: its body by pydantic (a union discriminated by ``type``,
:mod:`services.jobs.params`: an unknown type, a missing field or a value out of range is a 422 naming the parameter),
then against the disk (the dataset and its version, the run, the model; :func:`services.store.checks.plan`, which
reads files only). A train job can chain an evaluate and an export job (``evaluate: true``, ``export: {...}``): the
chain is queued whole, each job after the one before (RQ ``depends_on``), and every record shows it; a sweep is
one train and evaluate chain per row and a report waiting for them all (``job_id`` is the report's). Jobs are
enqueued by their type's dotted function path (:mod:`services.jobs.types`): nothing here imports the worker. Redis is
used through RQ's synchronous client in a worker thread, one connection per call (jobs are rare, the calls are short).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import redis
from fastapi import APIRouter, Body, Query, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from services.errors import Unavailable
from services.gateway.api.deps import ApiKeyDep, SettingsDep
from services.gateway.api.schemas import error_responses
from services.gateway.config import GatewaySettings
from services.jobs.chains import cancel, submit
from services.jobs.params import JobParams
from services.jobs.queues import fetch_job
from services.jobs.records import artifact_path, list_records, record
from services.jobs.schemas import CanceledJob, JobList, JobRecord, SubmittedJobs
from services.store.checks import plan  # reads datasets, runs and models on disk: no TensorFlow

router = APIRouter(prefix="/v1", tags=["jobs"])

_T = TypeVar("_T")
_ERRORS = error_responses(
    {
        401: "no API key",
        403: "a wrong API key",
        404: "no such job or artifact",
        409: "the job has already ended (cancel), or its run is being trained by another job (submit)",
        422: "an unknown type, a bad or missing parameter, an unknown dataset, run or model: nothing was queued",
        503: "the job queue (Redis) can't be reached",
    }
)
_EXAMPLES = {
    "train": {
        "summary": "train a detector, then evaluate and export it",
        "value": {
            "type": "train",
            "dataset": "shapes",
            "input_size": 320,
            "alpha": 0.35,
            "epochs": 10,
            "evaluate": True,
            "export": {"model": "shapes"},
        },
    },
    "evaluate": {
        "summary": "evaluate a published version",
        "value": {"type": "evaluate", "model": "demo", "dataset": "shapes"},
    },
    "export": {
        "summary": "export a trained run",
        "value": {"type": "export", "run": "shapes-1a2b3c4d", "model": "shapes"},
    },
    "active-learning": {
        "summary": "grow a boxed dataset from a pool labelled by class folder",
        "value": {
            "type": "active-learning",
            "model": "shapes",
            "dataset": "shapes",
            "pool": "pools/shapes",
            "rounds": 3,
        },
    },
    "sweep": {
        "summary": "train every alpha x input size, then table accuracy against images/s",
        "value": {
            "type": "sweep",
            "dataset": "shapes",
            "alphas": [0.35, 0.5, 1.0],
            "input_sizes": [128, 160, 224],
            "epochs": 10,
        },
    },
}


@contextmanager
def _redis(settings: GatewaySettings) -> Iterator[redis.Redis]:
    try:
        with redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=10) as connection:
            yield connection
    except redis.RedisError as exc:
        raise Unavailable(f"the job queue (Redis) can't be reached: {exc}") from exc


async def _with_redis(settings: GatewaySettings, work: Callable[[redis.Redis], _T]) -> _T:
    def call() -> _T:
        with _redis(settings) as connection:
            return work(connection)

    return await run_in_threadpool(call)


@router.post(
    "/jobs",
    status_code=202,
    response_model_exclude_unset=True,
    responses={**_ERRORS, 202: {"description": "queued (with its chain)"}},
)
async def submit_job(
    body: Annotated[JobParams, Body(openapi_examples=_EXAMPLES)],
    settings: SettingsDep,
    _: ApiKeyDep,
    response: Response,
) -> SubmittedJobs:
    """Submit a train, evaluate, export, active-learning or sweep job (a train job may chain evaluate and export)."""
    planned = await run_in_threadpool(plan, body, settings.data_dir, settings.model_root)
    jobs = await _with_redis(settings, lambda c: submit(c, planned))
    # The job of the type submitted: a chain's first, a sweep's report (its last, after the rows).
    first = next(job.job_id for job in planned if job.type == body.type)
    response.headers["Location"] = f"/v1/jobs/{first}"
    return SubmittedJobs.model_validate(
        {
            "job_id": first,
            "status_url": f"/v1/jobs/{first}",
            "jobs": [record(j, settings.data_dir, model_root=settings.model_root) for j in jobs],
        }
    )


@router.get("/jobs", response_model_exclude_unset=True, responses=_ERRORS)
async def list_jobs(
    settings: SettingsDep,
    _: ApiKeyDep,
    type: Annotated[
        str | None, Query(description="only jobs of this type (import, train, evaluate, export...)")
    ] = None,
    state: Annotated[str | None, Query(description="queued, deferred, scheduled, started, finished, failed...")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="at most this many, newest first")] = 50,
) -> JobList:
    """Jobs, newest first."""
    jobs = await _with_redis(
        settings,
        lambda c: list_records(
            c, settings.data_dir, job_type=type, state=state, limit=limit, model_root=settings.model_root
        ),
    )
    return JobList.model_validate({"jobs": jobs})


@router.get("/jobs/{job_id}", response_model_exclude_unset=True, responses=_ERRORS)
async def get_job(job_id: str, settings: SettingsDep, _: ApiKeyDep) -> JobRecord:
    """A job: state, progress, metrics so far, artifacts, error or result."""
    found = await _with_redis(
        settings, lambda c: record(fetch_job(job_id, c), settings.data_dir, model_root=settings.model_root)
    )
    return JobRecord.model_validate(found)


@router.delete("/jobs/{job_id}", response_model_exclude_unset=True, responses=_ERRORS)
async def cancel_job(job_id: str, settings: SettingsDep, _: ApiKeyDep) -> CanceledJob:
    """Cancel a job: a waiting one is canceled, a running one stopped; the jobs chained after it are canceled."""

    def work(connection: redis.Redis) -> dict[str, Any]:
        before = cancel(connection, job_id)
        return {
            **record(fetch_job(job_id, connection), settings.data_dir, model_root=settings.model_root),
            "canceled_from": before.value,
        }

    return CanceledJob.model_validate(await _with_redis(settings, work))


@router.get(
    "/jobs/{job_id}/artifacts/{name:path}",
    responses={**_ERRORS, 200: {"description": "the file (PNG, JSON, text)"}},
    response_class=FileResponse,
)
async def get_artifact(job_id: str, name: str, settings: SettingsDep, _: ApiKeyDep) -> FileResponse:
    """One of a job's artifacts (a name from its record's ``artifacts``, e.g. ``round-1/review.json``)."""
    path = await run_in_threadpool(artifact_path, settings.data_dir, job_id, name)
    return FileResponse(path, filename=name)
