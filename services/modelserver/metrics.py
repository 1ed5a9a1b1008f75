"""The model server's Prometheus metrics, under TensorFlow Serving's own names, labels and units.

TFS exports TensorFlow's monitoring metrics with ``/`` turned into ``:`` (``/tensorflow/serving/request_count`` ->
``:tensorflow:serving:request_count``), latencies in **microseconds**, histograms with TF's
``Buckets::Exponential(10, 1.8, 33)``, and counters without a ``_total`` suffix. prometheus-client always renames a
counter to ``..._total`` in its ``# TYPE`` line, which would not match TFS's exposition, so this module keeps its
own small counters and histograms and writes the text format itself (as TFS's ``prometheus_exporter.cc`` does).

What is recorded where mirrors TFS: ``request_count`` and ``request_latency`` for gRPC ``Predict`` (latency only
when it succeeds), ``runtime_latency`` for every model run (gRPC, REST and warmup), ``model_warmup_latency`` per
warmed-up version, and TensorFlow's SavedModel ``load_attempt_count`` / ``load_latency`` per loaded version.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator

# TF's Buckets::Exponential(10, 1.8, 33): limits 10 * 1.8^i; the last bucket runs to +Inf (~20 minutes in µs).
LATENCY_BUCKETS: tuple[float, ...] = tuple(10 * 1.8**i for i in range(33))


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    escaped = (v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for v in values)
    return ",".join(f'{n}="{v}"' for n, v in zip(names, escaped, strict=True))


class Counter:
    """A monotonically increasing integer per label set."""

    def __init__(self, name: str, help_text: str, labelnames: tuple[str, ...]) -> None:
        self.name, self.help, self.labelnames = name, help_text, labelnames
        self._values: dict[tuple[str, ...], int] = {}
        self._lock = threading.Lock()

    def inc(self, *labels: str, amount: int = 1) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0) + amount

    def value(self, *labels: str) -> int:
        return self._values.get(labels, 0)

    def render(self) -> Iterator[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        with self._lock:
            items = sorted(self._values.items())
        for labels, value in items:
            yield f"{self.name}{{{_labels(self.labelnames, labels)}}} {value}"


class Histogram:
    """A distribution per label set, with TF's bucketing (a value equal to a limit counts in the next bucket)."""

    def __init__(
        self, name: str, help_text: str, labelnames: tuple[str, ...], buckets: tuple[float, ...] = LATENCY_BUCKETS
    ) -> None:
        self.name, self.help, self.labelnames, self.buckets = name, help_text, labelnames, buckets
        self._cells: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}
        self._lock = threading.Lock()

    def observe(self, *labels: str, value: float) -> None:
        index = bisect.bisect_right(self.buckets, value)
        with self._lock:
            counts, total = self._cells.setdefault(labels, ([0] * (len(self.buckets) + 1), [0.0]))
            counts[index] += 1
            total[0] += value

    def count(self, *labels: str) -> int:
        cell = self._cells.get(labels)
        return sum(cell[0]) if cell else 0

    def render(self) -> Iterator[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        with self._lock:
            items = sorted((labels, (list(c), t[0])) for labels, (c, t) in self._cells.items())
        for labels, (counts, total) in items:
            label_text = _labels(self.labelnames, labels)
            prefix = f"{label_text}," if label_text else ""
            cumulative = 0
            for i, count in enumerate(counts):
                cumulative += count
                limit = f"{self.buckets[i]:g}" if i < len(self.buckets) else "+Inf"
                yield f'{self.name}_bucket{{{prefix}le="{limit}"}} {cumulative}'
            yield f"{self.name}_sum{{{label_text}}} {total!r}"
            yield f"{self.name}_count{{{label_text}}} {cumulative}"


class ModelServerMetrics:
    """The metrics one model server process exports."""

    def __init__(self) -> None:
        self.request_count = Counter(
            ":tensorflow:serving:request_count", "The total number of requests.", ("model_name", "status")
        )
        self.request_latency = Histogram(
            ":tensorflow:serving:request_latency",
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ("model_name", "API", "entrypoint"),
        )
        self.runtime_latency = Histogram(
            ":tensorflow:serving:runtime_latency",
            "Distribution of wall time (in microseconds) for Tensorflow runtime.",
            ("model_name", "API", "runtime"),
        )
        self.model_warmup_latency = Histogram(
            ":tensorflow:serving:model_warmup_latency",
            "Distribution of wall time (in microseconds) for warming up the model.",
            ("model_path", "status"),
        )
        self.load_attempt_count = Counter(
            ":tensorflow:cc:saved_model:load_attempt_count",
            "The number of times a SavedModel was successfully loaded.",
            ("model_path", "status"),
        )
        self.load_latency = Counter(
            ":tensorflow:cc:saved_model:load_latency",
            "Latency in microseconds for SavedModels that were successfully loaded.",
            ("model_path",),
        )

    def render(self) -> str:
        """The Prometheus text exposition (format 0.0.4)."""
        families = (
            self.load_attempt_count,
            self.load_latency,
            self.model_warmup_latency,
            self.request_count,
            self.request_latency,
            self.runtime_latency,
        )
        return "\n".join(line for family in families for line in family.render()) + "\n"


METRICS = ModelServerMetrics()
"""The process's metrics (one registry per process, like TensorFlow's own)."""
