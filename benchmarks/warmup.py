"""First-request latency of a newly rolled-out version: no warmup file, synthetic warmup, warmup from real traffic.

One embedded model server (a real child process) serves ``demo`` from a private model root. Each round publishes
a new version of the demo model three times, once per warmup kind, in an order that rotates from round to round,
exactly as an export would (the folder written aside, then renamed in): ``none`` (no
``assets.extra/tf_serving_warmup_requests``), ``synthetic`` (the export's grey canvases at batch 1, 8 and 32) and
``traffic`` (the demo examples' letterboxed canvases, as the gateway samples them, through
:mod:`services.training.traffic_warmup`). For each version it measures how long it took to become AVAILABLE (which
includes replaying the warmup), then, once the version it replaces has been unloaded, the first ``Predict`` at batch 1,
the first at batch 8, and the median of a few more at batch 1 (the steady state).

This process imports TensorFlow (to write the records) and so talks to the server through TFS's own stubs.

    python -m benchmarks.warmup --rounds 3
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Annotated, Any

import grpc
import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from benchmarks.cli_support import emit, work_folder
from benchmarks.inputs import DEMO_EXAMPLES, DEMO_MODEL, canvases, latest_version, load_examples, model_views
from services.jobs.params import WarmupSource
from services.modelserver.launch import ModelServerHandle, running_model_server

KINDS: tuple[WarmupSource, ...] = ("none", "synthetic", "traffic")
STEADY_CALLS = 5
MEASURES = {
    "available_s": ("AVAILABLE after (s)", 2),
    "first_ms": ("1st Predict b1 (ms)", 1),
    "first_b8_ms": ("1st Predict b8 (ms)", 1),
    "steady_ms": ("steady b1 (ms)", 1),
    "steady_b8_ms": ("steady b8 (ms)", 1),
    "first_per_steady": ("1st / steady b1", 2),
}
"""Each row's measures: the column title and the digits shown."""


def _traffic_sample(images: np.ndarray) -> list[bytes]:
    """The canvases as the gateway's sampler stores them: serialized uint8 ``[S, S, 3]`` TensorProtos."""
    import tensorflow as tf

    return [bytes(tf.make_tensor_proto(image).SerializeToString()) for image in images]


def _publish(source: Path, model_dir: Path, version: int, kind: WarmupSource, sample: list[bytes], size: int) -> Path:
    """Copy ``source`` aside with ``kind``'s warmup file, then rename it in as ``version``."""
    from services.training.traffic_warmup import write_warmup

    staging = model_dir.parent / f".staging-{version}"
    shutil.copytree(source, staging)
    write_warmup(staging, kind, sample, model_name=model_dir.name, size=size)
    target = model_dir / str(version)
    staging.rename(target)
    return target


def _predict(stub: Any, model: str, images: np.ndarray) -> float:
    """Seconds of one ``serving_default`` Predict of ``images``."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
    start = time.perf_counter()
    stub.Predict(request, timeout=120)
    return time.perf_counter() - start


def _measure_version(
    server: ModelServerHandle, stub: Any, model: str, version: int, published: float, images: np.ndarray
) -> dict[str, float]:
    server.wait_available(model, version, timeout=300)
    available = time.perf_counter() - published
    if version > 2:  # the server keeps the latest two: the one before that is unloaded now, which costs CPU too
        server.wait_state(model, version - 2, "END", timeout=120)
    one = images[:1]
    eight = np.ascontiguousarray(images[np.arange(8) % len(images)])
    first = _predict(stub, model, one)
    first_8 = _predict(stub, model, eight)
    steady = statistics.median(_predict(stub, model, one) for _ in range(STEADY_CALLS))
    steady_8 = statistics.median(_predict(stub, model, eight) for _ in range(STEADY_CALLS))
    return {
        "available_s": available,
        "first_ms": first * 1e3,
        "first_b8_ms": first_8 * 1e3,
        "steady_ms": steady * 1e3,
        "steady_b8_ms": steady_8 * 1e3,
        "first_per_steady": first / steady,  # less moved by the machine's load than either time alone
    }


def run_bench(rounds: int, work: Path) -> dict[str, Any]:
    """Publish ``rounds`` x 3 versions on one model server and measure each (see the module's text)."""
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    source = latest_version(DEMO_MODEL)
    size = _input_size(source)
    images = canvases(load_examples(DEMO_EXAMPLES, size, model_views(source)), size)
    sample = _traffic_sample(images)
    model_dir = work / "models" / "demo"
    model_dir.mkdir(parents=True)
    _publish(source, model_dir, 1, "synthetic", sample, size)
    rows: list[dict[str, Any]] = []
    with running_model_server(work / "models", log_dir=work / "logs", poll_seconds=0.2, wait_for=["demo"]) as server:
        channel = grpc.insecure_channel(server.grpc_target)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        _predict(stub, "demo", images[:1])  # the process's first TensorFlow run is nobody's first request
        version = 1
        for round_number in range(rounds):
            order = KINDS[round_number % 3 :] + KINDS[: round_number % 3]
            for kind in order:
                version += 1
                published = time.perf_counter()
                _publish(source, model_dir, version, kind, sample, size)
                row = _measure_version(server, stub, "demo", version, published, images)
                rows.append({"kind": kind, "round": round_number + 1, "version": version, **row})
        channel.close()
    return {
        "model": "demo",
        "input_size": size,
        "sample": len(sample),
        "rounds": rounds,
        "rows": rows,
        "load_average": " ".join(f"{v:.2f}" for v in os.getloadavg()),  # a shared machine's numbers say so
    }


def _input_size(version_dir: Path) -> int:
    meta = json.loads((version_dir / "assets.extra" / "spotter.json").read_text())
    return int(meta["detector"]["input_size"])


def summary(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per warmup kind: the median, min and max of each measure over the rounds."""
    out = []
    for kind in KINDS:
        rows = [r for r in result["rows"] if r["kind"] == kind]
        entry: dict[str, Any] = {"kind": kind, "versions": len(rows)}
        for key in MEASURES:
            values = [r[key] for r in rows]
            entry[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
        out.append(entry)
    return out


def render(result: dict[str, Any], console: Console) -> None:
    title = f"first requests on a new version of {result['model']}: median (min-max) of {result['rounds']}"
    table = Table(title=title)
    table.add_column("warmup")
    for column, _ in MEASURES.values():
        table.add_column(column, justify="right")
    for entry in result["summary"]:
        cells = [entry["kind"]]
        for key, (_, digits) in MEASURES.items():
            s = entry[key]
            cells.append(f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})")
        table.add_row(*cells)
    console.print(table)
    console.print(f"load average at the end: {result['load_average']}")


def main(
    rounds: Annotated[int, typer.Option(min=1, help="versions published per warmup kind")] = 3,
    work_dir: Annotated[Path | None, typer.Option(help="kept work folder (default: a temporary one)")] = None,
    output: Annotated[Path | None, typer.Option(help="also write the result as JSON here")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
) -> None:
    """First-request latency of a new version with no warmup, synthetic warmup and warmup from real traffic."""
    with work_folder(work_dir, "spotter-warmup-bench-") as work:
        result = run_bench(rounds, work)
    result["summary"] = summary(result)
    emit(result, output, as_json, render, width=120)


if __name__ == "__main__":
    typer.run(main)
