"""The rows of the bench's load-generator part: what each row measures (:class:`Row`, a spec that the run and the
tables read), the order they run in, and each row's figures from what its load generator measured.

A new kind of row is a new :class:`Row` in a plan (its ``kind`` names the load generator's target and the stack
entry it runs against) and, when it has figures of its own, a column in :mod:`benchmarks.report`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Row:
    """One measured row: a target (``tfs``: the model server; ``rest``/``grpc``: the gateway), its batching, its load,
    and for model-server rows the TensorFlow thread setting of the server it runs against."""

    kind: str
    target: str
    batching: str
    concurrency: int
    batch: int = 1
    threads: str = ""

    @property
    def id(self) -> str:
        mode = f"/{self.batching}" if self.batching else ""
        threads = f"/t{self.threads}" if self.threads else ""
        return f"{self.kind}{mode}{threads}/c{self.concurrency}/b{self.batch}"


def alone_rows(best_batch: int, threads: str) -> list[Row]:
    """The model server alone at the best batch, by 1 and 2 clients (the gateway keeps up to two Predicts in
    flight), and at batch 1 by 2 clients (concurrent single images, what the gateway's adaptive batching converges
    to where batching does not pay): the model-server half of the ceiling, measured as ``benchmarks.inprocess``
    measures the other."""
    rows = [Row("tfs", "model server", "", clients, best_batch, threads) for clients in (1, 2)]
    if best_batch != 1:
        rows.append(Row("tfs", "model server", "", 2, 1, threads))
    return rows


def served_rows(concurrency: tuple[int, ...], protocols: tuple[str, ...], threads: str) -> list[Row]:
    """The model server alone at batch 1 (what one client could get), then the gateway rows, batching on and off
    side by side at each concurrency."""
    rows = [Row("tfs", "model server", "", 1, 1, threads)]
    for clients in concurrency:
        for kind in protocols:
            target = "gateway REST" if kind == "rest" else "gateway gRPC"
            rows += [Row(kind, target, mode, clients) for mode in ("on", "off")]
    return rows


def _per(value: float, count: float, scale: float = 1.0) -> float | None:
    return value / count * scale if count else None


def summarize(row: Row, raw: dict[str, Any]) -> dict[str, Any]:
    """The row's figures: images/s, latency, where the time and CPU went, the machine's load during it (the ratio to
    the ceiling is added once the ceiling is known)."""
    images_per_second = raw["calls_per_second"] * row.batch
    images = raw["calls"] * row.batch
    window = raw["window_seconds"]
    gw = raw["counters"].get("gateway", {})
    ms = raw["counters"].get("modelserver", {})
    mean_batch = _per(gw["batched_images"], gw["batches"]) if gw else float(row.batch)
    return {
        "id": row.id,
        **asdict(row),
        "images_per_second": images_per_second,
        "calls": raw["calls"],
        "images": images,
        "window_seconds": window,
        "errors": raw["errors"],
        "latency_ms": raw["latency_ms"],
        "load": raw["load"],
        "mean_batch": mean_batch,
        "gateway_queue_ms": _per(gw.get("queue_seconds_sum", 0), gw.get("queue_count", 0), 1e3),
        "gateway_predict_ms": _per(gw.get("upstream_seconds_sum", 0), gw.get("upstream_count", 0), 1e3),
        "gateway_decode_ms": _per(gw.get("decode_seconds_sum", 0), gw.get("decode_count", 0), 1e3),
        "modelserver_request_ms": _per(ms.get("request_us_sum", 0), ms.get("request_count", 0), 1e-3),
        "tf_runtime_ms": _per(ms.get("runtime_us_sum", 0), ms.get("runtime_count", 0), 1e-3),
        "cpu_ms_per_image": {k: _per(v, images, 1e3) for k, v in raw["cpu_seconds"].items()},
        "cores_busy": {k: v / window for k, v in raw["cpu_seconds"].items()},
    }
