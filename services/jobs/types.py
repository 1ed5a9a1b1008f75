"""The job types by name: each one's parameters model, queue, and job function by dotted path.

The gateway and the client enqueue a job by its type's name through this table and never import the code that runs
it: RQ takes the function as a dotted path, and only the worker's work-horse imports it (with TensorFlow behind it).
A submission becomes a chain here (:func:`chain_of`: a train job with ``evaluate`` and ``export`` is three jobs);
the checks of each part against the disk are training's (:func:`services.store.checks.plan`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel

from services.jobs.params import (
    ActiveLearningParams,
    EvaluateParams,
    ExportParams,
    Split,
    SweepParams,
    TrainParams,
)
from services.jobs.queues import DATA_QUEUE, TRAIN_QUEUE

_FUNCTIONS = "services.worker.jobs"


@dataclass(frozen=True, slots=True)
class JobType:
    """A job type: its name (``meta["type"]``), its parameters model, its queue, and its function's dotted path."""

    name: str
    params: type[BaseModel] | None
    queue: str
    func: str


IMPORT = JobType("import", None, DATA_QUEUE, f"{_FUNCTIONS}.import_dataset_job")
"""Dataset imports: enqueued by ``POST /v1/datasets`` and ``spotter dataset import`` (body: :func:`import_body`)."""

JOB_TYPES: Mapping[str, JobType] = {
    t.name: t
    for t in (
        JobType("train", TrainParams, TRAIN_QUEUE, f"{_FUNCTIONS}.train_job"),
        JobType("evaluate", EvaluateParams, TRAIN_QUEUE, f"{_FUNCTIONS}.evaluate_job"),
        JobType("export", ExportParams, TRAIN_QUEUE, f"{_FUNCTIONS}.export_job"),
        JobType("active-learning", ActiveLearningParams, TRAIN_QUEUE, f"{_FUNCTIONS}.active_learning_job"),
        JobType("sweep", SweepParams, TRAIN_QUEUE, f"{_FUNCTIONS}.sweep_job"),
    )
}
"""The job types of the jobs API (``POST /v1/jobs``), by the ``type`` of their parameters."""

ALL_TYPES: tuple[str, ...] = (IMPORT.name, *JOB_TYPES)
"""Every job type, as ``meta["type"]`` and the metrics' ``type`` label name them."""


def job_type(params: BaseModel) -> JobType:
    """The type of a parameters model (every one has a literal ``type``)."""
    return JOB_TYPES[str(getattr(params, "type"))]  # noqa: B009 - the union's members all have it


def chain_of(params: BaseModel) -> list[BaseModel]:
    """The jobs a submission becomes, in order: a train job (checked: its run and dataset version filled in), then
    (as asked) an evaluate job and an export job on the same run and dataset; a sweep (checked: its run prefix
    filled in) each row's train and evaluate jobs, then itself (the report); any other job alone."""
    if isinstance(params, SweepParams):
        return [*(part for row in params.rows() for part in _row_chain(row, params.split)), params]
    if not isinstance(params, TrainParams) or not (params.evaluate or params.export is not None):
        return [params]
    if params.run is None:
        raise ValueError("a train job's chain is made from its checked params (its run named)")
    chain: list[BaseModel] = [params]
    data = {"dataset": params.dataset, "dataset_version": params.dataset_version}
    if params.evaluate:
        chain.append(EvaluateParams(run=params.run, **data))
    if params.export is not None:
        chain.append(ExportParams(run=params.run, **params.export.model_dump(), **data))
    return chain


def _row_chain(row: TrainParams, split: Split) -> list[BaseModel]:
    """A sweep row's train job and its evaluate job on ``split``."""
    if row.run is None:
        raise ValueError("a sweep's chain is made from its checked params (its run prefix named)")
    data = {"dataset": row.dataset, "dataset_version": row.dataset_version}
    return [row, EvaluateParams(run=row.run, split=split, **data)]


class _ImportRequest(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


def import_body(request: _ImportRequest) -> dict[str, Any]:
    """The body of an import job: the request as JSON (paths inside the data folder are best given relative to it,
    so a gateway and a worker that mount the data folder at different places agree)."""
    return {"request": request.to_dict()}
