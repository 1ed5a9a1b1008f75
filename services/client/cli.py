"""``spotter detect``: send an image to a running gateway and show what it found."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from services.client.rest import RestClient
from services.errors import SpotterError
from services.files import atomic_write
from services.vision.results import DetectResult


def detect(
    image: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="a JPEG, PNG or WebP file")],
    model: Annotated[str, typer.Option(help="the model to ask")] = "demo",
    url: Annotated[str, typer.Option(envvar="SPOTTER_GATEWAY_URL", help="the gateway")] = "http://127.0.0.1:8080",
    min_score: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="drop detections below this")] = None,
    max_detections: Annotated[int | None, typer.Option(min=1, max=1000)] = None,
    version: Annotated[int | None, typer.Option(min=1, help="a model version (default: the latest)")] = None,
    label: Annotated[str | None, typer.Option(help="a version label instead of a version")] = None,
    tile: Annotated[str | None, typer.Option(help="auto, on or off")] = None,
    annotate: Annotated[
        Path | None, typer.Option(dir_okay=False, help="also write the image with boxes drawn (.jpg or .png)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the answer as JSON")] = False,
    api_key: Annotated[str | None, typer.Option(envvar="SPOTTER_API_KEY", help="sent as X-API-Key")] = None,
) -> None:
    """Detect objects in IMAGE with a running gateway; print them as a table (or JSON)."""
    console = Console()
    options = {"version": version, "label": label, "min_score": min_score, "max_detections": max_detections}
    try:
        with RestClient(url, api_key=api_key) as client:
            result = client.detect(image, model=model, tile=tile, **options)  # type: ignore[arg-type]
            if annotate is not None:
                accept = "image/png" if annotate.suffix.lower() == ".png" else "image/jpeg"
                drawn = client.annotate(image, model=model, accept=accept, tile=tile, **options)  # type: ignore[arg-type]
                atomic_write(annotate, drawn.image)
    except SpotterError as err:
        Console(stderr=True).print(f"[red]{err.code}[/red]: {err.message}")
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        console.print(_table(image, result))
    if annotate is not None and not as_json:
        console.print(f"annotated image written to {annotate}")


def _table(image: Path, result: DetectResult) -> Table:
    table = Table(
        title=f"{image.name}: {len(result.detections)} detections "
        f"({result.model} v{result.version}, {result.width}x{result.height})"
    )
    table.add_column("label")
    table.add_column("score", justify="right")
    for name in ("xmin", "ymin", "xmax", "ymax"):
        table.add_column(name, justify="right")
    for d in result.detections:
        table.add_row(d.label, f"{d.score:.3f}", *(f"{v:.1f}" for v in d.box.as_tuple()))
    return table


def register(app: typer.Typer) -> None:
    app.command()(detect)
