"""The gateway-ceiling bench's tables (rich): CPU per image against the floor, scaling over processes, memory."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(result: dict[str, Any], console: Console) -> None:
    """Print the rows, the scaling over gateway processes, the goals and the memory."""
    model = result["model"]
    plan = result["plan"]
    console.print(
        f"[bold]Gateway ceiling[/bold]: instant upstream (recorded {model['name']} v{model['version']} outputs, no "
        f"model run), {plan['concurrency']} clients, {plan['duration']:g} s windows, "
        f"{result['machine']['cpu_count']} CPUs"
    )
    table = Table(title="Gateway CPU per image (all gateway processes, all threads) against decode + letterbox")
    headers = (
        "input",
        "API",
        "procs",
        "images/s",
        "gw CPU ms/img",
        "img/s per core",
        "floor ms/img",
        "x floor",
        "upstream ms/img",
        "client ms/img",
        "p50 ms",
        "p99 ms",
        "gw RSS MB (max)",
        "errors",
        "load 1m",
    )
    for header in headers:
        table.add_column(header, justify="left" if header in ("input", "API") else "right")
    for row in result["rows"]:
        rss = row["gateway_rss_max_mb"]
        workers_rss = sorted(rss.values())[1:] if len(rss) > 1 else list(rss.values())  # the supervisor is tiny
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(row["errors"].items())) or "0"
        table.add_row(
            row["input"],
            row["protocol"],
            str(row["workers"]),
            _num(row["images_per_second"]),
            _num(row["gateway_cpu_ms_per_image"], 2),
            _num(row["images_per_core_second"], 0),
            _num(row["floor_ms_per_image"], 2),
            _num(row["ratio_to_floor"], 2),
            _num(row["upstream_cpu_ms_per_image"], 2),
            _num(row["client_cpu_ms_per_image"], 2),
            _num(row["latency_ms"]["p50"]),
            _num(row["latency_ms"]["p99"]),
            " + ".join(f"{v:.0f}" for v in workers_rss),
            errors,
            _num(row["loadavg"][0], 2),
        )
    console.print(table)

    scaling = Table(title="Scaling over gateway processes (images/s against the instant upstream)")
    for header in ("input", "API", *(f"{w} proc" for w in plan["workers"]), "ratio"):
        scaling.add_column(header, justify="left" if header in ("input", "API") else "right")
    by_key: dict[tuple[str, str], dict[int, float]] = {}
    for row in result["rows"]:
        by_key.setdefault((row["input"], row["protocol"]), {})[row["workers"]] = row["images_per_second"]
    for (name, protocol), per in by_key.items():
        values = [per.get(w) for w in plan["workers"]]
        first, last = values[0], values[-1]
        ratio = last / first if first and last and len(values) > 1 else None
        scaling.add_row(name, protocol, *(_num(v) for v in values), _num(ratio, 2))
    console.print(scaling)

    for name, goal in result["goals_ms_per_image"].items():
        measured = [
            r["gateway_cpu_ms_per_image"]
            for r in result["rows"]
            if r["input"] == name and r["workers"] == 1 and r["gateway_cpu_ms_per_image"] is not None
        ]
        if measured:
            best = min(measured)
            verdict = "[green]met[/green]" if best <= goal else "[red]not met[/red]"
            console.print(f"goal {name}: <= {goal:g} CPU ms/image; best row {best:.2f} ms: {verdict}")
    memory = result["memory_mb"]
    under_load = [
        max(list(r["gateway_rss_max_mb"].values()))
        for r in result["rows"]
        if r["workers"] == 1 and r["gateway_rss_max_mb"]
    ]
    console.print(
        f"memory: gateway RSS under load (1 process, {plan['concurrency']} clients) max "
        f"{_num(max(under_load) if under_load else None, 0)} MB (goal <= 150); model server idle "
        f"{_num(memory['modelserver_idle'], 0)} MB; worker idle {_num(memory['worker_idle'], 0)} MB"
    )
