"""A sweep's report job: once every row has trained and been evaluated (each on its own worker), export every row
here, measure all the exports in turns, and write the table and the accuracy-against-speed plot.

Per row: its accuracy from its evaluate job's ``evaluation.json`` (mAP@0.5 for detectors, top-1 accuracy for
classifiers, on the sweep's split), its training time from its train job's ``metrics.json``, and its run's final
weights exported as the export job would (same signatures, same code) into a hidden scratch folder of this job and
removed at the end: publishing a row is an export job on its run. The exports are measured after all the rows have
trained (no figure shares the machine with the sweep's own training) and together, in turns
(:mod:`services.training.throughput`), fed the sweep's split letterboxed to each row's size
(:mod:`services.training.sweep_inputs`): images/s by batch size, with the load average it was measured under.

Artifacts: ``sweep.json`` (the rows and the parameters), ``sweep.md`` and ``sweep.csv`` (the table), ``sweep.png``
(accuracy against images/s at the best batch, each point ``alpha@size``, the Pareto front drawn).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.errors import InvalidParameter
from services.files import atomic_write, scratch_dir
from services.jobs.params import SweepParams
from services.jobs.records import job_dir
from services.store.runs import RunStore
from services.training import plots
from services.training.results import SweepResult
from services.training.sweep_inputs import sweep_canvases
from services.training.sweep_table import SweepRow, csv_text, markdown, with_fronts
from services.training.throughput import measure_in_turns, tree_bytes

if TYPE_CHECKING:
    from services.training.pipeline import Reporter

log = logging.getLogger(__name__)

METRIC_OF_KIND = {"detector": "map50", "classifier": "accuracy"}


def _evaluation(data_dir: Path, job_id: str, run: str) -> dict[str, Any]:
    """A row's evaluation report (its evaluate job's ``evaluation.json``)."""
    path = job_dir(data_dir, job_id) / "evaluation.json"
    if not path.is_file():
        raise InvalidParameter(f"the evaluation of run {run!r} (job {job_id}) is not in the data folder")
    report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return report


def _train_seconds(data_dir: Path, job_id: str) -> float | None:
    path = job_dir(data_dir, job_id) / "metrics.json"
    if not path.is_file():
        return None
    value = json.loads(path.read_text(encoding="utf-8")).get("train_seconds")
    return float(value) if value is not None else None


def exported_row(row: Mapping[str, Any], data_dir: Path, folder: Path, job_id: str) -> tuple[str, SweepRow, Path]:
    """``(kind, the row's table entry without its speed, its export)``: its evaluation and training time read, its
    run's final weights exported into ``folder`` as the export job would."""
    from services.training.models import load_final

    run = str(row["run"])
    report = _evaluation(data_dir, str(row["evaluate_job"]), run)
    kind = str(report.get("kind"))
    metric = report.get(METRIC_OF_KIND.get(kind, "map50"))
    spec, model = load_final(RunStore(data_dir).path(run) / "final")
    export_dir = spec.export(model, folder / "model", model_name=run, metadata={"run": run, "job": job_id})
    entry = SweepRow(
        alpha=float(row["alpha"]),
        input_size=int(row["input_size"]),
        run=run,
        train_job=str(row["train_job"]),
        evaluate_job=str(row["evaluate_job"]),
        metric=float(metric) if metric is not None else None,
        images_per_second={},
        saved_model_bytes=tree_bytes(export_dir),
        parameters=int(model.count_params()),
        train_seconds=_train_seconds(data_dir, str(row["train_job"])),
    )
    return kind, entry, export_dir


def measured_rows(
    params: SweepParams, rows: Sequence[Mapping[str, Any]], reporter: Reporter, data_dir: Path
) -> tuple[set[str], list[SweepRow], str]:
    """``(the rows' kinds, their table entries, what they were fed)``: every row exported, then all measured in turns
    on the sweep's split (see :mod:`services.training.throughput`), the exports removed afterwards."""
    import keras

    kinds: set[str] = set()
    entries: list[SweepRow] = []
    exports: list[Path] = []
    with ExitStack() as scratch:
        for index, row in enumerate(rows):
            label = f"{float(row['alpha']):g}@{int(row['input_size'])}"
            reporter.update(progress=40.0 * index / len(rows), stage="exporting", message=f"row {label}")
            folder = scratch.enter_context(scratch_dir(reporter.artifacts, prefix=".export-"))
            kind, entry, export_dir = exported_row(row, data_dir, folder, reporter.id)
            kinds.add(kind)
            entries.append(entry)
            exports.append(export_dir)
            keras.backend.clear_session()  # each row's graphs go before the next row's are built
        canvases, inputs = sweep_canvases(
            data_dir, params.dataset, params.dataset_version, params.split, max(params.batches)
        )
        reporter.update(
            progress=40.0,
            stage="measuring",
            message=f"{len(rows)} rows in {params.measure_rounds} rounds on {inputs}",
            force=True,
        )
        speeds = measure_in_turns(
            exports,
            params.batches,
            window_seconds=params.measure_seconds / params.measure_rounds,
            rounds=params.measure_rounds,
            canvases=canvases,
        )
    measured = [
        replace(
            entry,
            images_per_second={b: round(v, 2) for b, v in speed.images_per_second.items()},
            load_average=round(speed.load_average, 2),
        )
        for entry, speed in zip(entries, speeds, strict=True)
    ]
    for entry in measured:
        log.info("sweep row %s: %s, images/s %s", entry.label, entry.metric, entry.images_per_second)
    return kinds, measured, inputs


def report(params: SweepParams, rows: Sequence[Mapping[str, Any]], reporter: Reporter, data_dir: Path) -> SweepResult:
    """Measure every row and write the table and the plot; the job's result (see the module's text).

    Raises:
        InvalidParameter: no rows (the job was not planned as a sweep), or a row's evaluation is missing.
    """
    if not rows:
        raise InvalidParameter("a sweep's report needs its rows (submit the sweep through POST /v1/jobs)")
    kinds, measured, inputs = measured_rows(params, rows, reporter, data_dir)
    table = with_fronts(measured)
    kind = kinds.pop() if len(kinds) == 1 else "detector"
    metric = METRIC_OF_KIND.get(kind, "map50")
    return _write(params, table, kind, metric, inputs, reporter)


def _write(
    params: SweepParams, table: list[SweepRow], kind: str, metric: str, inputs: str, reporter: Reporter
) -> SweepResult:
    """``sweep.json``, ``sweep.md``, ``sweep.csv`` and ``sweep.png``; the result."""
    reporter.update(progress=95.0, stage="writing", message="the table and the plot", force=True)
    rows = [row.to_json() for row in table]
    folder: Path = reporter.artifacts
    body = {
        "kind": kind,
        "metric": metric,
        "split": params.split,
        "inputs": inputs,
        "rows": rows,
        "params": params.model_dump(),
    }
    reporter.write_json("sweep.json", body)
    atomic_write(folder / "sweep.md", markdown(table, metric))
    atomic_write(folder / "sweep.csv", csv_text(table, metric))
    plots.sweep_front(
        [(row.label, row.best_images_per_second, row.metric or 0.0, row.pareto) for row in table],
        folder / "sweep.png",
        metric=f"{params.split} {metric}",
        title=f"{params.dataset} v{params.dataset_version}: accuracy against speed",
    )
    front = [row.label for row in table if row.pareto]
    reporter.update(
        counts={"rows": len(table), "pareto": len(front)},
        metrics={f"best_{metric}": max((row.metric or 0.0 for row in table), default=0.0)},
        force=True,
    )
    return SweepResult(
        kind=kind,
        metric=metric,
        dataset=params.dataset,
        dataset_version=int(params.dataset_version or 0),
        split=params.split,
        inputs=inputs,
        rows=rows,
        pareto=front,
        table=str(folder / "sweep.json"),
        plot=str(folder / "sweep.png"),
    )
