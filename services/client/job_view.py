"""How the job commands show jobs: a progress bar per job of a chain, a job's record in a few lines, errors."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.errors import SpotterError

out = Console()
err = Console(stderr=True)

RESULT_KEYS = ("run", "epochs_done", "best_epoch", "train_seconds", "map50", "map50_coco101", "map_coco", "accuracy")


def fail(exc: SpotterError) -> typer.Exit:
    """Print a Spotter error (code, message, details) on stderr; the exit to raise (status 1)."""
    err.print(f"[red]{exc.code}[/red]: {exc.message}", highlight=False)
    if exc.details:
        err.print(json.dumps(exc.details, indent=2, default=str), highlight=False)
    return typer.Exit(1)


def bar() -> Progress:
    """The progress display (on stderr, so ``--json`` output stays clean)."""
    columns = (TextColumn("{task.description:<28}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"))
    return Progress(*columns, TimeElapsedColumn(), TextColumn("{task.fields[message]}"), console=err)


def show(progress: Progress, task: TaskID, record: dict[str, Any]) -> None:
    """Move a job's bar to what its record says."""
    done = record.get("progress", {})
    where = f" {done['epoch']}/{done['epochs']}" if "epoch" in done and "epochs" in done else ""
    progress.update(
        task,
        description=f"{record.get('type')} {record.get('stage') or record['state']}{where}",
        completed=float(done.get("percent") or 0.0),
        message=(record.get("message") or "")[:60],
    )


def print_record(record: dict[str, Any]) -> None:
    """A job in a few lines: type, id, state, error, headline results, the published version, artifacts."""
    state = record.get("state")
    colour = {"finished": "green", "failed": "red", "canceled": "yellow", "stopped": "yellow"}.get(str(state), "cyan")
    out.print(f"[bold]{record.get('type')}[/bold] {record.get('id')}: [{colour}]{state}[/{colour}]")
    if record.get("error"):
        out.print(f"  error: {record['error'].get('code')}: {record['error'].get('message')}", highlight=False)
    result = record.get("result") or {}
    for key in (*RESULT_KEYS, "stopped", "report"):
        if key in result:
            out.print(f"  {key}: {result[key]}", highlight=False)
    if "version" in result and "model" in result:
        out.print(f"  published {result['model']} version {result['version']} ({result.get('path')})", highlight=False)
        gate = result.get("gate") or {}
        out.print(f"  gate: {gate.get('reason')}", highlight=False)
    if record.get("type") == "sweep" and result.get("rows"):
        out.print(sweep_table(result))
    for artifact in record.get("artifacts") or []:
        out.print(f"  artifact {artifact['name']} ({artifact['bytes']} bytes) {artifact['url']}", highlight=False)


def sweep_table(result: dict[str, Any]) -> Table:
    """A finished sweep's rows: accuracy, images/s at batch 1 and at the best batch, size, and the Pareto front."""
    table = Table(title=f"sweep: {result.get('metric')} on {result.get('split')} against images/s")
    for column in ("ROW", str(result.get("metric")).upper(), "IMG/S B1", "BEST B", "IMG/S BEST", "MB", "PARETO"):
        table.add_column(column)
    for row in result["rows"]:
        metric = row.get("metric")
        table.add_row(
            str(row.get("label")),
            f"{metric:.3f}" if isinstance(metric, float) else "-",
            f"{row.get('batch1_images_per_second', 0):.1f}",
            str(row.get("best_batch")),
            f"{row.get('best_images_per_second', 0):.1f}",
            f"{row.get('saved_model_bytes', 0) / 1e6:.1f}",
            "yes" if row.get("pareto") else "",
        )
    return table
