"""Rich tables for people: a dataset's summary (ID, NAME, Train, Validate[, Test]) and an import's problems."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from services.store.datasets.manifest import Manifest
from services.store.datasets.problems import ProblemReport, Severity

SPLIT_TITLES = {"train": "Train", "validation": "Validate", "test": "Test", "pool": "Pool"}
_STYLES = {Severity.FATAL: "bold red", Severity.ERROR: "red", Severity.WARNING: "yellow"}


def summary_table(manifest: Manifest) -> Table:
    """One row per class and a total row; cells are images, with boxes in brackets for detection datasets."""
    boxes = manifest.kind == "detection"
    caption = "images (boxes) per class and split" if boxes else "images per class and split"
    table = Table(title=f"{manifest.name} v{manifest.version} ({manifest.kind})", caption=caption)
    table.add_column("ID", justify="right")
    table.add_column("NAME")
    splits = list(manifest.counts)
    for split in splits:
        table.add_column(SPLIT_TITLES.get(split, split.title()), justify="right")

    def cell(images: int, count: int) -> str:
        return f"{images} ({count})" if boxes else str(images)

    for row in manifest.summary_rows():
        table.add_row(str(row["id"]), row["name"], *(cell(row[s]["images"], row[s]["boxes"]) for s in splits))
    totals = manifest.counts
    table.add_section()
    table.add_row("", "all images", *(cell(totals[s].images, totals[s].boxes) for s in splits), style="bold")
    return table


def problems_table(report: ProblemReport, limit: int | None = 200) -> Table:
    """The problems in the order found (the first ``limit`` of them), with their file and row or element."""
    counts = report.counts()
    caption = ", ".join(f"{n} {s}" for s, n in counts.items())
    shown = report.problems if limit is None else report.problems[:limit]
    if len(shown) < len(report.problems):
        caption += f"; the first {len(shown)} shown"
    table = Table(title="Problems", caption=caption)
    for column in ("severity", "code", "file", "where", "message"):
        table.add_column(column, overflow="fold")
    for p in shown:
        table.add_row(str(p.severity), p.code, p.file, p.where, p.message, style=_STYLES[p.severity])
    return table


def render_text(table: Table, width: int = 140) -> str:
    """A table as plain text (for job logs)."""
    console = Console(width=width, no_color=True, file=io.StringIO())
    with console.capture() as capture:
        console.print(table)
    return capture.get()
