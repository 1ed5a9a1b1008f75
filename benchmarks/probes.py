"""What the load generator reads at the edges of its measured window: the CPU time of the servers' processes and
their Prometheus counters (batch sizes, queue and upstream times; TFS's runtime latency).

CPU time comes from ``/proc/<pid>/stat`` (utime + stime of every thread): the bench runs on Linux, and one number
per process does not justify a new dependency (psutil).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process (all its threads) has used so far."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the command name (which may hold spaces, hence the last ")"): state is field 3, utime 14, stime 15.
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_SECOND


@dataclass(frozen=True)
class Series:
    """Sum the samples named ``sample`` whose labels include ``labels``."""

    sample: str
    labels: Mapping[str, str]


GATEWAY_SERIES: dict[str, Series] = {
    "batches": Series("spotter_batch_size_count", {}),
    "batched_images": Series("spotter_batch_size_sum", {}),
    "queue_seconds_sum": Series("spotter_queue_seconds_sum", {}),
    "queue_count": Series("spotter_queue_seconds_count", {}),
    "upstream_seconds_sum": Series("spotter_upstream_seconds_sum", {"method": "Predict"}),
    "upstream_count": Series("spotter_upstream_seconds_count", {"method": "Predict"}),
    "decode_seconds_sum": Series("spotter_decode_seconds_sum", {}),
    "decode_count": Series("spotter_decode_seconds_count", {}),
}
"""The gateway's counters the bench reads (docs/architecture.md, Metrics)."""

MODELSERVER_SERIES: dict[str, Series] = {
    "runtime_us_sum": Series(":tensorflow:serving:runtime_latency_sum", {}),
    "runtime_count": Series(":tensorflow:serving:runtime_latency_count", {}),
    "request_us_sum": Series(":tensorflow:serving:request_latency_sum", {"API": "Predict"}),
    "request_count": Series(":tensorflow:serving:request_latency_count", {"API": "Predict"}),
}
"""TFS's own metrics (the embedded model server exports the same names, in microseconds)."""


def totals(exposition: str, wanted: Mapping[str, Series]) -> dict[str, float]:
    """The sum of each wanted series in a Prometheus text exposition (0 when absent)."""
    result = dict.fromkeys(wanted, 0.0)
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            for key, series in wanted.items():
                if sample.name == series.sample and all(sample.labels.get(k) == v for k, v in series.labels.items()):
                    result[key] += float(sample.value)
    return result
