"""Run a submission of the jobs API in this process (``spotter train ... --local``): the same checks and chain as a
submission to the gateway (:func:`services.store.checks.plan`), then each job through the worker's own
:func:`services.worker.jobs.execute`, so a local job runs the same function with the same parameters model and
context as the worker's, and writes the same artifacts under this machine's data folder.

Progress goes to a callback (the CLI's progress bar) as the records of the jobs API show it: ``type``, ``state``,
``stage``, ``message`` and ``progress`` (``percent``, and ``epoch``/``epochs`` while training).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from services.errors import InvalidParameter
from services.jobs.params import JobParams, SweepParams
from services.logs import configure_logging
from services.worker.context import worker_settings
from services.worker.jobs import execute
from services.worker.progress import JobRun

OnProgress = Callable[[int, dict[str, Any]], None]
"""``(index of the job in the chain, its record so far)``."""


class _Watched:
    """A job's :class:`~services.worker.progress.JobRun` that also hands each update to a callback."""

    def __init__(self, run: JobRun, index: int, on_progress: OnProgress) -> None:
        self._run, self._index, self._on_progress = run, index, on_progress
        self.artifacts = run.artifacts

    @property
    def id(self) -> str:
        return str(self._run.id)

    def update(self, **fields: Any) -> None:
        self._run.update(**fields)
        meta = self._run.meta
        progress: dict[str, Any] = {"percent": meta.get("progress", 0.0)}
        progress.update({k: meta[k] for k in ("epoch", "epochs") if k in meta})
        record = {"type": self._run.job_type, "state": "started", "progress": progress}
        self._on_progress(self._index, {**record, "stage": meta.get("stage"), "message": meta.get("message")})

    def write_json(self, name: str, body: Any) -> Path:
        path: Path = self._run.write_json(name, body)
        return path


def run_chain(body: dict[str, Any], on_progress: OnProgress) -> list[dict[str, Any]]:
    """Check ``body`` (the parameters of ``POST /v1/jobs``) against this machine's data folder and model root, and
    run its chain here, one job after the other; the finished jobs' records (``id``, ``type``, ``state``,
    ``result``).

    Raises:
        SpotterError: a check failed (nothing ran), or a job failed (the jobs after it do not run).
    """
    from services.store.checks import plan

    configure_logging("WARNING", json=False)
    settings = worker_settings()
    params = TypeAdapter(JobParams).validate_python(body)
    if isinstance(params, SweepParams):
        raise InvalidParameter(
            "a sweep runs its rows as jobs of their own on the workers and its report reads their records: submit it "
            "to a gateway (without --local)",
            details={"parameter": "local"},
        )
    records: list[dict[str, Any]] = []
    for index, job in enumerate(plan(params, settings.data_dir, settings.model_root)):
        on_progress(index, {"type": job.type, "state": "started", "progress": {"percent": 0.0}})
        made: list[_Watched] = []

        def watched(run: JobRun, i: int = index, made: list[_Watched] = made) -> _Watched:
            made.append(_Watched(run, i, on_progress))
            return made[-1]

        result = execute(job.type, job.params, settings, reporter=watched)
        record = {"id": made[0].id, "type": job.type, "state": "finished", "result": result}
        on_progress(index, {**record, "progress": {"percent": 100.0}})
        records.append(record)
    return records
