"""A sweep's table: one row per combination of width multiplier and input size, with its accuracy, its export's
speed and size, and whether it is on the Pareto front (TensorFlow-free: pure data and text).

A row is on the front when no other row is at least as accurate *and* at least as fast, and strictly better in one
of the two: those are the only rows worth serving, and which one depends on the budget (images/s the hardware must
reach). Speed is the export's images/s at its best batch size (what a batching server reaches); the batch-1 figure
(one request at a time, latency-bound) has a front of its own, ``pareto_batch1``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class SweepRow:
    """One combination: what it trained, how well it does on the sweep's split, and how fast and big its export is.

    ``metric`` is the row's headline (mAP@0.5 for detectors, top-1 accuracy for classifiers; ``None`` when the split
    has nothing to score), ``images_per_second`` its export's images/s by batch size, ``load_average`` the machine's
    1-minute load average over its measuring windows (rows measured in turns share the same stretches of load).
    """

    alpha: float
    input_size: int
    run: str
    train_job: str
    evaluate_job: str
    metric: float | None
    images_per_second: dict[int, float]
    saved_model_bytes: int
    parameters: int
    train_seconds: float | None = None
    load_average: float | None = None
    pareto: bool = False
    pareto_batch1: bool = False

    @property
    def label(self) -> str:
        """``alpha@size`` (``0.35@128``), as the plot labels the point."""
        return f"{self.alpha:g}@{self.input_size}"

    @property
    def best_batch(self) -> int:
        """The batch size with the most images/s (the smaller one on a tie)."""
        return max(sorted(self.images_per_second), key=lambda b: self.images_per_second[b])

    @property
    def best_images_per_second(self) -> float:
        return self.images_per_second[self.best_batch]

    @property
    def batch1_images_per_second(self) -> float:
        return self.images_per_second[1]

    def to_json(self) -> dict[str, Any]:
        """The row as the job's result and ``sweep.json`` hold it (batch sizes as string keys, as JSON has them)."""
        body = asdict(self)
        body["images_per_second"] = {str(b): v for b, v in sorted(self.images_per_second.items())}
        body.update(
            label=self.label,
            best_batch=self.best_batch,
            best_images_per_second=self.best_images_per_second,
            batch1_images_per_second=self.batch1_images_per_second,
        )
        return body


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For each ``(accuracy, speed)`` point, whether no other point dominates it (at least as good in both, better in
    one). Equal points are all on the front."""
    return [
        not any(a >= accuracy and s >= speed and (a > accuracy or s > speed) for a, s in points)
        for accuracy, speed in points
    ]


def with_fronts(rows: Sequence[SweepRow]) -> list[SweepRow]:
    """The rows with :attr:`SweepRow.pareto` (speed at the best batch) and ``pareto_batch1`` set; a row with no
    metric counts as 0 (it can still be on the front by speed alone)."""

    def front(speed: Callable[[SweepRow], float]) -> list[bool]:
        return pareto_front([(row.metric or 0.0, speed(row)) for row in rows])

    best = front(lambda row: row.best_images_per_second)
    single = front(lambda row: row.batch1_images_per_second)
    return [replace(row, pareto=p, pareto_batch1=q) for row, p, q in zip(rows, best, single, strict=True)]


COLUMNS = (
    "alpha",
    "input_size",
    "metric",
    "batch1_images_per_second",
    "best_batch",
    "best_images_per_second",
    "saved_model_bytes",
    "parameters",
    "train_seconds",
    "load_average",
    "pareto",
    "pareto_batch1",
    "run",
)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1 else f"{value:.1f}"
    return str(value)


def _values(row: SweepRow) -> list[Any]:
    body = row.to_json()
    return [body[column] for column in COLUMNS]


def markdown(rows: Sequence[SweepRow], metric_name: str) -> str:
    """The table in Markdown, ``metric`` headed by its name (``map50``, ``accuracy``)."""
    header = [metric_name if c == "metric" else c for c in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in _values(row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_text(rows: Sequence[SweepRow], metric_name: str) -> str:
    """The table as CSV (full precision), ``metric`` headed by its name."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([metric_name if c == "metric" else c for c in COLUMNS])
    for row in rows:
        writer.writerow(["" if v is None else v for v in _values(row)])
    return buffer.getvalue()
