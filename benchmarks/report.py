"""The bench's tables (rich): the ceiling per batch size, throughput per row, and where each row's time goes."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _errors(errors: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(errors.items())) or "0"


def _label(row: dict[str, Any]) -> tuple[str, str]:
    batching = {"on": "on", "off": "off"}.get(row["batching"], "-")
    return row["target"], batching


def render(result: dict[str, Any], console: Console) -> None:
    """Print the three tables and the note on shared CPUs."""
    ceiling = result["ceiling"]
    model = result["model"]
    console.print(
        f"[bold]Spotter serving bench[/bold]: model {model['name']} version {model['version']}, "
        f"input {ceiling['input_size']}x{ceiling['input_size']} uint8, {ceiling['examples']} example images, "
        f"TensorFlow {ceiling['tensorflow']}, {result['machine']['cpu_count']} CPUs"
    )

    table = Table(title="Ceiling: serving_default in process (TensorFlow alone on the machine)")
    for header in ("batch", "images/s", "ms per call (p50)"):
        table.add_column(header, justify="right")
    for entry in ceiling["batches"]:
        best = entry["batch"] == ceiling["batch"]
        style = "bold green" if best else None
        table.add_row(
            str(entry["batch"]), _num(entry["images_per_second"]), _num(entry["ms_per_call_p50"]), style=style
        )
    console.print(table)
    console.print(f"ceiling = {ceiling['images_per_second']:.1f} images/s (batch {ceiling['batch']})\n")

    plan = result["plan"]
    table = Table(
        title=f"Throughput ({plan['duration']:g} s window after {plan['warmup']:g} s warm-up per row, closed loop)"
    )
    for header, justify in (
        ("target", "left"),
        ("batching", "center"),
        ("clients", "right"),
        ("images/call", "right"),
        ("images/s", "right"),
        ("x ceiling", "right"),
        ("p50 ms", "right"),
        ("p99 ms", "right"),
        ("errors", "right"),
    ):
        table.add_column(header, justify=justify, no_wrap=header == "target")  # type: ignore[arg-type]
    for row in result["rows"]:
        target, batching = _label(row)
        table.add_row(
            target,
            batching,
            str(row["concurrency"]),
            str(row["batch"]),
            _num(row["images_per_second"]),
            _num(row["ratio_to_ceiling"], 2),
            _num(row["latency_ms"]["p50"]),
            _num(row["latency_ms"]["p99"]),
            _errors(row["errors"]),
        )
    console.print(table)

    table = Table(
        title="Where the time goes (means over each row's window; CPU per image served; cores = CPU s per second)"
    )
    for header in (
        "target",
        "batching",
        "clients",
        "batch",
        "queue ms",
        "decode ms",
        "Predict ms",
        "in server ms",
        "TF ms",
        "CPU client",
        "CPU gateway",
        "CPU server",
        "cores busy",
    ):
        table.add_column(header, justify="left" if header == "target" else "right", no_wrap=header == "target")
    for row in result["rows"]:
        target, batching = _label(row)
        cpu = row["cpu_ms_per_image"]
        busy = sum(row["cores_busy"].values())
        table.add_row(
            target,
            batching,
            str(row["concurrency"]),
            _num(row["mean_batch"]),
            _num(row["gateway_queue_ms"]),
            _num(row["gateway_decode_ms"]),
            _num(row["gateway_predict_ms"]),
            _num(row["modelserver_request_ms"]),
            _num(row["tf_runtime_ms"]),
            _num(cpu.get("client")),
            _num(cpu.get("gateway")),
            _num(cpu.get("modelserver")),
            _num(busy, 2),
        )
    console.print(table)
    console.print(
        "batch: mean images per Predict; queue: an image's wait in the gateway's batcher; decode: the gateway's "
        "image decoding; Predict: the model server call as the gateway sees it; in server: Predict inside the "
        "model server; TF: the model's run inside it (all per Predict call). CPU: ms of each process per image.",
        style="dim",
    )
    console.print(f"[yellow]Note:[/yellow] {result['note']}")
