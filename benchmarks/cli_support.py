"""What the bench commands share around their runs: the work folder and how a result is written out."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console


@contextmanager
def work_folder(path: Path | None, prefix: str) -> Iterator[Path]:
    """``path`` (made if missing and kept), or a temporary folder removed afterwards."""
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


def emit(
    result: dict[str, Any],
    output: Path | None,
    as_json: bool,
    render: Callable[[dict[str, Any], Console], None],
    width: int,
) -> None:
    """Write the result as JSON to ``output`` when given; print it as JSON or as tables (``width`` off a terminal)."""
    if output is not None:
        output.write_text(json.dumps(result, indent=2) + "\n")
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    out = Console()
    render(result, out if out.is_terminal else Console(width=width))
