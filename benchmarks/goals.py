"""The figures issue 15 sets goals for, read from one run's result: each a :class:`Goal` (what, measured, goal,
met). A new figure is one more function in :data:`CHECKS`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Goal:
    """One figure: what it is, its measured value as text, the goal as text, whether it was met (None: no goal)."""

    what: str
    measured: str
    goal: str
    met: bool | None


def _row(result: dict[str, Any], kind: str, batching: str, clients: int, batch: int = 1) -> dict[str, Any] | None:
    return next(
        (
            r
            for r in result["rows"]
            if (r["kind"], r["batching"], r["concurrency"], r["batch"]) == (kind, batching, clients, batch)
        ),
        None,
    )


def _protocols(result: dict[str, Any]) -> list[tuple[str, str]]:
    kinds = {r["kind"] for r in result["rows"]}
    return [(kind, name) for kind, name in (("rest", "REST"), ("grpc", "gRPC")) if kind in kinds]


def ceiling(result: dict[str, Any]) -> Iterator[Goal]:
    best = result["ceiling"]["best"]
    yield Goal("ceiling (best of in process and model server alone)", result["ceiling"]["lines"][0], "-", None)
    compared = [
        c
        for c in result["ceiling"]["cpu"]
        if (c["threads"], c["batch"], c["callers"]) == (best["threads"], best["batch"], best["callers"])
    ] or result["ceiling"]["cpu"]
    if compared:
        cheapest = min(compared, key=lambda c: c["inprocess_cpu_ms"])
        ratio = compared[0]["modelserver_cpu_ms"] / cheapest["inprocess_cpu_ms"]
        yield Goal(
            f"model server CPU per image / in process ({cheapest['way']}), threads {cheapest['threads']}, "
            f"batch {cheapest['batch']}, {cheapest['callers']} callers",
            f"{compared[0]['modelserver_cpu_ms']:.1f} / {cheapest['inprocess_cpu_ms']:.1f} ms = {ratio:.2f}",
            "<= 1.05",
            ratio <= 1.05,
        )


def at_32_clients(result: dict[str, Any]) -> Iterator[Goal]:
    for kind, name in _protocols(result):
        on, off = _row(result, kind, "on", 32), _row(result, kind, "off", 32)
        if on is None:
            continue
        ratio = on["ratio_to_ceiling"]
        yield Goal(f"32 clients, {name}, batching on: images/s / ceiling", f"{ratio:.2f}", ">= 0.95", ratio >= 0.95)
        if off is not None:
            p99_on, p99_off = on["latency_ms"]["p99"], off["latency_ms"]["p99"]
            yield Goal(
                f"32 clients, {name}: p99 batching on vs off",
                f"{p99_on:.0f} vs {p99_off:.0f} ms",
                "on <= off",
                p99_on <= p99_off,
            )


def at_one_client(result: dict[str, Any]) -> Iterator[Goal]:
    alone = _row(result, "tfs", "", 1)
    if alone is None:
        return
    for kind, name in _protocols(result):
        on = _row(result, kind, "on", 1)
        if on is None:
            continue
        extra = on["latency_ms"]["p50"] - alone["latency_ms"]["p50"]
        yield Goal(
            f"1 client, {name}, batching on: p50 - model server alone at batch 1",
            f"{on['latency_ms']['p50']:.1f} - {alone['latency_ms']['p50']:.1f} = {extra:+.1f} ms",
            "<= +3 ms",
            extra <= 3.0,
        )


CHECKS: list[Callable[[dict[str, Any]], Iterator[Goal]]] = [ceiling, at_32_clients, at_one_client]


def goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every figure of :data:`CHECKS` that this run has the rows for."""
    return [asdict(goal) for check in CHECKS for goal in check(result)]
