"""``spotter dataset import|list|show``. Imports run in this process (TensorFlow is imported when they write)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from services.settings import DatasetSettings
from services.store.datasets.annotations import SourceFormat

out = Console()
err = Console(stderr=True)


def register(app: typer.Typer) -> None:
    """Add ``spotter dataset`` and its commands to the ``spotter`` command."""
    dataset = typer.Typer(
        help="Import labelled images as versioned datasets; list and show them.", no_args_is_help=True
    )
    dataset.command("import")(import_command)
    dataset.command("list")(list_command)
    dataset.command("show")(show_command)
    app.add_typer(dataset, name="dataset")


def _settings() -> DatasetSettings:
    """The dataset settings the worker has too (an in-process import does the worker's job), and quiet logging for
    a terminal."""
    from services.logs import configure_logging

    settings = DatasetSettings()
    configure_logging("WARNING", json=False)
    return settings


def import_command(
    path: Annotated[Path, typer.Argument(help="A folder, or a zip / tar.gz archive.")],
    name: Annotated[str, typer.Option("--name", "-n", help="The dataset's name; a new version of it is made.")],
    fmt: Annotated[SourceFormat, typer.Option("--format", "-f", help="How the images are labelled.")],
    split: Annotated[float, typer.Option(help="Train fraction (0.5-0.95); validation gets the rest.")] = 0.8,
    test_split: Annotated[float, typer.Option(help="A test fraction taken from the rest (0-0.4).")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the split.")] = 0,
    label_map: Annotated[Path | None, typer.Option(help="A label map (.pbtxt) the classes must be in.")] = None,
    pool: Annotated[
        bool, typer.Option(help="Folder per class as an active-learning pool (image-level labels, no split).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Import labelled images (Pascal VOC, CSV, folder per class, TF OD API TFRecords) as a new dataset version."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from services.errors import SpotterError
    from services.store.datasets.problems import ProblemReport
    from services.store.datasets.report import problems_table, summary_table
    from services.store.datasets.request import ImportRequest
    from services.store.datasets.storage import DatasetStore
    from services.training.datasets.importer import Progress as ImportProgress
    from services.training.datasets.importer import import_dataset

    settings = _settings()
    request = ImportRequest(
        name=name,
        format=fmt,
        source=path,
        split=split,
        test_split=test_split,
        seed=seed,
        label_map=label_map,
        pool=pool,
        limits=settings.archive_limits(),
    )
    columns = (TextColumn("{task.description:<9}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"))
    with Progress(*columns, TimeElapsedColumn(), console=err, transient=True) as bar:
        task = bar.add_task("start", total=100.0)

        def on_progress(p: ImportProgress) -> None:
            bar.update(task, description=p.stage, completed=p.percent)

        try:
            result = import_dataset(request, DatasetStore(settings.data_dir), on_progress)
        except SpotterError as exc:
            bar.stop()
            err.print(f"[red]import failed:[/red] {exc.message}", highlight=False)
            if isinstance(exc.details, dict) and "problems" in exc.details:
                err.print(problems_table(ProblemReport.from_dict(exc.details["problems"])))
            raise typer.Exit(1) from exc
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    out.print(summary_table(result.manifest))
    if len(result.problems):
        out.print(problems_table(result.problems))
    out.print(f"dataset [bold]{result.manifest.name}[/bold] version {result.manifest.version} in {result.path}")


def list_command(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List datasets with their latest version."""
    from rich.table import Table

    from services.store.datasets.storage import DatasetStore

    store = DatasetStore(_settings().data_dir)
    rows = []
    for dataset in store.names():
        latest = store.manifest(dataset)
        rows.append({**latest.summary(), "versions": store.versions(dataset)})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="Datasets")
    for column in ("NAME", "VERSIONS", "KIND", "CLASSES", "IMAGES", "CREATED"):
        table.add_column(column)
    for row in rows:
        images = ", ".join(f"{s} {t['images']}" for s, t in row["totals"].items())
        versions = ", ".join(map(str, row["versions"]))
        table.add_row(row["name"], versions, str(row["kind"]), str(row["classes"]), images, row["created"])
    out.print(table)


def show_command(
    name: Annotated[str, typer.Argument(help="The dataset.")],
    version: Annotated[int | None, typer.Option(help="A version (default: the latest).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Show a dataset version: its summary table, source, files and the problems its import found."""
    from services.errors import SpotterError
    from services.store.datasets.problems import ProblemReport
    from services.store.datasets.report import problems_table, summary_table
    from services.store.datasets.storage import DatasetStore

    try:
        manifest = DatasetStore(_settings().data_dir).manifest(name, version)
    except SpotterError as exc:
        err.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(json.dumps(manifest.model_dump(mode="json"), indent=2))
        return
    out.print(summary_table(manifest))
    source = manifest.source
    origin = source.archive or source.derived_from or "a folder"
    out.print(
        f"created {manifest.created} from {origin} ({source.format}); "
        f"split {manifest.split.ratios}, seed {manifest.split.seed}"
    )
    for file, entry in manifest.files.items():
        out.print(f"  {file}  {entry.bytes} bytes  sha256 {entry.sha256[:16]}…", highlight=False)
    report = ProblemReport.from_dict(manifest.problems)
    if len(report):
        out.print(problems_table(report))
