"""The bench's tables (rich): the ceiling's candidates, throughput per row, where each row's time goes, and the
figures issue 15 sets goals for.

Each table is a list of :class:`Column` specs (header, alignment, how to read the cell from a row's dict): a new
figure is one more ``Column``; a new kind of row needs nothing here as long as it carries the keys it is read by.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

Cell = Callable[[dict[str, Any]], str]


@dataclass(frozen=True)
class Column:
    """One column: its header, its alignment, and its cell for a row."""

    header: str
    cell: Cell
    justify: Literal["left", "center", "right"] = "right"


def num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def load(row: dict[str, Any]) -> str:
    """The machine's 1-minute load average at the row's start and end."""
    span = row.get("load")
    return "-" if not span else f"{span['start']:.1f}-{span['end']:.1f}"


def _errors(errors: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(errors.items())) or "0"


def _batching(row: dict[str, Any]) -> str:
    return row["batching"] or (f"threads {row['threads']}" if row.get("threads") else "-")


def _cpu(name: str) -> Cell:
    return lambda r: num(r["cpu_ms_per_image"].get(name))


CANDIDATES = [
    Column("source", lambda r: r["source"], "left"),
    Column("way", lambda r: r["way"], "left"),
    Column("threads", lambda r: r["threads"]),
    Column("batch", lambda r: str(r["batch"])),
    Column("callers", lambda r: str(r["callers"])),
    Column("images/s", lambda r: num(r["images_per_second"])),
    Column("ms per call (p50)", lambda r: num(r["ms_per_call_p50"])),
    Column("CPU ms/image", lambda r: num(r["cpu_ms_per_image"], 2)),
    Column("load", load),
]
SWEEP = [
    Column("batch", lambda r: str(r["batch"])),
    Column("images/s", lambda r: num(r["images_per_second"])),
    Column("ms per call (p50)", lambda r: num(r["ms_per_call_p50"])),
    Column("CPU ms/image", lambda r: num(r["cpu_ms_per_image"], 2)),
    Column("load", load),
]
CPU = [
    Column("threads", lambda r: r["threads"]),
    Column("batch", lambda r: str(r["batch"])),
    Column("callers", lambda r: str(r["callers"])),
    Column("in process", lambda r: r["way"], "left"),
    Column("model server CPU ms/image", lambda r: num(r["modelserver_cpu_ms"], 2)),
    Column("in process CPU ms/image", lambda r: num(r["inprocess_cpu_ms"], 2)),
    Column("ratio", lambda r: num(r["ratio"], 2)),
]
THROUGHPUT = [
    Column("target", lambda r: r["target"], "left"),
    Column("batching", _batching, "center"),
    Column("clients", lambda r: str(r["concurrency"])),
    Column("images/call", lambda r: str(r["batch"])),
    Column("images/s", lambda r: num(r["images_per_second"])),
    Column("x ceiling", lambda r: num(r["ratio_to_ceiling"], 2)),
    Column("p50 ms", lambda r: num(r["latency_ms"]["p50"])),
    Column("p99 ms", lambda r: num(r["latency_ms"]["p99"])),
    Column("errors", lambda r: _errors(r["errors"])),
    Column("load", load),
]
WHERE = [
    Column("target", lambda r: r["target"], "left"),
    Column("batching", _batching),
    Column("clients", lambda r: str(r["concurrency"])),
    Column("batch", lambda r: num(r["mean_batch"])),
    Column("queue ms", lambda r: num(r["gateway_queue_ms"])),
    Column("decode ms", lambda r: num(r["gateway_decode_ms"])),
    Column("Predict ms", lambda r: num(r["gateway_predict_ms"])),
    Column("in server ms", lambda r: num(r["modelserver_request_ms"])),
    Column("TF ms", lambda r: num(r["tf_runtime_ms"])),
    Column("CPU client", _cpu("client")),
    Column("CPU gateway", _cpu("gateway")),
    Column("CPU server", _cpu("modelserver")),
    Column("cores busy", lambda r: num(sum(r["cores_busy"].values()), 2)),
]
GOALS = [
    Column("figure", lambda r: r["what"], "left"),
    Column("measured", lambda r: r["measured"]),
    Column("goal", lambda r: r["goal"]),
    Column("met", lambda r: {True: "yes", False: "NO", None: "-"}[r["met"]], "center"),
]


def table(title: str, columns: Sequence[Column], rows: Sequence[dict[str, Any]], best: Any = None) -> Table:
    """A table of ``rows`` read through ``columns``; the row that ``is best`` in bold green."""
    out = Table(title=title)
    for column in columns:
        out.add_column(column.header, justify=column.justify, no_wrap=column.justify == "left")
    for row in rows:
        out.add_row(*(column.cell(row) for column in columns), style="bold green" if row is best else None)
    return out


def render(result: dict[str, Any], console: Console) -> None:
    """Print the tables, the ceiling's explanation and the note on shared CPUs."""
    ceiling = result["ceiling"]
    model = result["model"]
    console.print(
        f"[bold]Spotter serving bench[/bold]: model {model['name']} version {model['version']}, "
        f"input {ceiling['input_size']}x{ceiling['input_size']} uint8, {ceiling['examples']} example images, "
        f"TensorFlow {ceiling['tensorflow']}, {result['machine']['cpu_count']} CPUs"
    )
    first = next(iter(ceiling["inprocess"].values()))
    console.print(table("Batch sizes: serving_default in process (function, 1 caller)", SWEEP, first["sweep"]))
    console.print(
        table(
            "Ceiling: in process and the model server alone, at the best batch and at batch 1 by 2 callers",
            CANDIDATES,
            ceiling["candidates"],
            best=ceiling["best"],
        )
    )
    for line in ceiling["lines"]:
        console.print(f"  {line}")
    console.print(f"ceiling = {ceiling['images_per_second']:.1f} images/s (batch {ceiling['batch']})\n")
    console.print(table("CPU per image: the model server against in process, same settings", CPU, ceiling["cpu"]))
    plan = result["plan"]
    title = f"Throughput ({plan['duration']:g} s window after {plan['warmup']:g} s warm-up per row, closed loop)"
    console.print(table(title, THROUGHPUT, result["rows"]))
    title = "Where the time goes (means over each row's window; CPU per image served; cores = CPU s per second)"
    console.print(table(title, WHERE, result["rows"]))
    console.print(
        "batch: mean images per Predict; queue: an image's wait in the gateway's batcher; decode: the gateway's "
        "image decoding; Predict: the model server call as the gateway sees it; in server: Predict inside the "
        "model server; TF: the model's run inside it (all per Predict call). CPU: ms of each process per image.",
        style="dim",
    )
    console.print(table("Issue 15 figures", GOALS, result["goals"]))
    console.print(f"[yellow]Note:[/yellow] {result['note']}")
