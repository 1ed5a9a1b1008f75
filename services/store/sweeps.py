"""A sweep at submit time (TensorFlow-free): its run names, the 422 of a row, and its plan, which is not a line like
other chains (:func:`services.store.checks.check_sweep` checks each row as the train job it becomes).

Each row (one alpha and one input size) is a train job and an evaluate job on the sweep's split, a chain of its own
that ends with the sweep's report job; the report waits for every row's evaluate job (RQ dependencies on all of
them). So the rows run side by side on as many workers as there are, and a row that fails cancels the report
(its chain's later jobs), leaving the other rows' runs as they are. Every row is a normal run (``runs/<run>/``): an
export job on it publishes it like any other.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from services.errors import InvalidParameter
from services.jobs.chains import PlannedJob
from services.jobs.params import ROW_NAME_ROOM, EvaluateParams, SweepParams, TrainParams
from services.jobs.types import chain_of
from services.store.runs import RunStore

ROW_PARAMETERS = {"alpha": "alphas", "input_size": "input_sizes", "run": "run_prefix"}
"""A row's parameter as the sweep names it, for the 422 of a row that does not pass its train job's check."""


def default_prefix(dataset: str) -> str:
    """``<dataset>-sweep-<random>``, the dataset's name cut so that every row's run name fits 64 characters."""
    tail = f"-sweep-{uuid.uuid4().hex[:8]}"
    return dataset[: 64 - ROW_NAME_ROOM - len(tail)] + tail


def new_run(row: TrainParams, data_dir: Path) -> None:
    """A sweep trains new runs: 422 (naming ``run_prefix``) when a row's run exists."""
    assert row.run is not None
    if RunStore(data_dir).info(row.run) is not None:
        raise InvalidParameter(
            f"run {row.run!r} exists: a sweep trains new runs; name another run_prefix",
            details={"parameter": "run_prefix"},
        )


def row_error(row: TrainParams, err: InvalidParameter) -> InvalidParameter:
    """A row's train-job check that failed, as the sweep's 422: the row named, and the sweep's parameter."""
    details: dict[str, Any] = dict(err.details) if isinstance(err.details, dict) else {}
    parameter = details.get("parameter")
    details["parameter"] = ROW_PARAMETERS.get(str(parameter), parameter or "dataset")
    details["row"] = {"alpha": row.alpha, "input_size": row.input_size}
    return InvalidParameter(f"row alpha {row.alpha:g}, input size {row.input_size}: {err.message}", details=details)


def plan_sweep(params: SweepParams) -> list[PlannedJob]:
    """The jobs of a checked sweep (see the module's text): per row its train job and its evaluate job, each row a
    chain that ends with the report; then the report, waiting for every row, with the rows in its ``meta``
    (``sweep.rows``: alpha, input size, run, and the ids of the row's train and evaluate jobs)."""
    parts = chain_of(params)
    report_id = uuid.uuid4().hex
    planned: list[PlannedJob] = []
    rows: list[dict[str, Any]] = []
    for train, evaluate in zip(parts[:-1:2], parts[1:-1:2], strict=True):
        assert isinstance(train, TrainParams) and isinstance(evaluate, EvaluateParams)
        train_id, evaluate_id = uuid.uuid4().hex, uuid.uuid4().hex
        chain = (train_id, evaluate_id, report_id)
        planned += [
            PlannedJob("train", train, train_id, after=(), chain=chain),
            PlannedJob("evaluate", evaluate, evaluate_id, after=(train_id,), chain=chain),
        ]
        rows.append(
            {
                "alpha": train.alpha,
                "input_size": train.input_size,
                "run": train.run,
                "train_job": train_id,
                "evaluate_job": evaluate_id,
            }
        )
    evaluations = tuple(row["evaluate_job"] for row in rows)
    every = (*(job.job_id for job in planned), report_id)
    report = PlannedJob("sweep", params, report_id, after=evaluations, chain=every, meta={"sweep": {"rows": rows}})
    return [*planned, report]
