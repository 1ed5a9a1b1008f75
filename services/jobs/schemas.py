"""The shapes the jobs API answers with (:mod:`services.jobs.records` builds them): pydantic models the routes
declare, so ``/docs`` shows them. Built from the record's dict and sent with ``response_model_exclude_unset``, so the
JSON is exactly the record: a key a record leaves out (``progress.epoch`` before training) stays out.

Open-ended parts (a job's parameters, metrics, counts and result) are JSON objects whose keys depend on its type.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow")  # a newer worker's extra keys pass through unchanged


class JobProgress(_Answer):
    percent: float = Field(description="0..100")
    epoch: int | None = None
    epochs: int | None = None
    step: int | None = None
    steps: int | None = None


class JobError(_Answer):
    code: str = Field("", description="e.g. invalid_parameter, stopped, abandoned, dependency_failed, internal")
    message: str = ""
    details: Any = None


class Artifact(BaseModel):
    name: str = Field(description="relative to the job's folder, e.g. round-1/review.json")
    bytes: int
    url: str = Field(description="where GET fetches it")
    path: str = Field(description="relative to the data folder")


class JobRecord(_Answer):
    """One job: state, progress, metrics so far, artifacts, error or result (see :mod:`services.jobs.records`)."""

    id: str
    type: str | None = Field(description="import, train, evaluate, export, active-learning")
    state: str = Field(description="queued, deferred, scheduled, started, finished, failed, stopped, canceled")
    stage: str | None
    message: str
    progress: JobProgress
    metrics: dict[str, Any]
    counts: dict[str, Any]
    params: dict[str, Any] | None = Field(description="the checked parameters it runs with")
    chain: list[str] = Field(description="the ids of its chain, in order")
    depends_on: str | list[str] | None = Field(
        description="the job before it in its chain (a sweep's report: every row's last job)"
    )
    queue: str
    created_at: str | None
    started_at: str | None
    ended_at: str | None
    error: JobError | None = Field(description="why it did not finish")
    result: Any = Field(description="what it made, once finished")
    artifacts: list[Artifact]
    status_url: str


class CanceledJob(JobRecord):
    canceled_from: str = Field(description="its state before: queued, deferred, scheduled or started")


class SubmittedJobs(BaseModel):
    """A queued submission: the first job, and every job of its chain."""

    job_id: str
    status_url: str
    jobs: list[JobRecord]


class JobList(BaseModel):
    jobs: list[JobRecord]


class QueuedJob(BaseModel):
    """A queued job (a dataset import): where to follow it."""

    job_id: str
    status_url: str
