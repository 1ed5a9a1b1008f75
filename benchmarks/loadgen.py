"""The load generator: a process of its own (``python -m benchmarks.loadgen``), so its CPU shows apart from the
gateway's and never runs on the gateway's event loop. Prints one JSON object on stdout.

Closed loop: ``concurrency`` workers each send a request, wait for the answer, and send the next. After ``warmup``
seconds and at least ``concurrency`` answers (``benchmarks.inprocess`` warms up the same way) the measured window
opens; it closes after ``duration`` seconds (or once ``requests`` answers came back).
Throughput counts the answers that arrived inside the window; latencies are those answers' round trips. At both
edges the generator reads the CPU time of the watched processes and their Prometheus counters, so every figure of a
row covers the same window.

Targets:
- ``rest``: ``POST /v1/models/{model}:detect`` on the gateway with the example files' bytes (httpx).
- ``tfs``: ``PredictionService.Predict`` on the model server with pre-letterboxed canvases, ``batch`` per call
  (Spotter's own TFS stubs, grpc.aio), which shows the cost of the model server alone.
- ``grpc``: the gateway's gRPC API (``services.client.rpc``), when the gateway has one.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import numpy as np
import typer

from benchmarks.inputs import DEMO_EXAMPLES, Example, batch_of, canvases, load_examples
from benchmarks.probes import GATEWAY_SERIES, MODELSERVER_SERIES, Series, cpu_seconds, totals

if TYPE_CHECKING:
    from services.client.rpc import Tile

Send = Callable[[int], Awaitable[str]]
"""``send(n)`` makes the n-th call and answers its outcome: ``"ok"`` or an error's name (an HTTP status...)."""


@dataclass
class Watch:
    """A process the generator watches: its pid and, optionally, its Prometheus endpoint and series."""

    name: str
    pid: int
    metrics_url: str | None = None
    series: dict[str, Series] = field(default_factory=dict)


@dataclass
class Snapshot:
    at: float
    cpu: dict[str, float]
    counters: dict[str, dict[str, float]]


async def snapshot(client: httpx.AsyncClient, watches: list[Watch]) -> Snapshot:
    """CPU times first (instant), then the counters (a scrape each)."""
    at = time.perf_counter()
    cpu = {w.name: cpu_seconds(w.pid) for w in watches}
    cpu["client"] = time.process_time()
    counters: dict[str, dict[str, float]] = {}
    for w in watches:
        if w.metrics_url:
            response = await client.get(w.metrics_url)
            response.raise_for_status()
            counters[w.name] = totals(response.text, w.series)
    return Snapshot(at, cpu, counters)


async def generate(
    send: Send,
    *,
    concurrency: int,
    warmup: float,
    duration: float,
    requests: int | None,
    min_calls: int = 1,
    watches: list[Watch],
) -> dict[str, Any]:
    """Run the closed loop and measure one window; the result's numbers are per call (the caller scales by batch)."""
    finished: list[tuple[float, float, str]] = []  # (sent, answered, outcome)
    warm = asyncio.Event()  # set once every worker's first answer came back (warm-up: a new shape's first run)
    window_open = asyncio.Event()
    progress = asyncio.Event()
    stop = asyncio.Event()
    counted = answered_in_window = 0  # ok answers (for ``requests``); all answers (for ``min_calls``)

    async def worker(index: int) -> None:
        nonlocal counted, answered_in_window
        n = index
        while not stop.is_set():
            sent = time.perf_counter()
            outcome = await send(n)
            answered = time.perf_counter()
            finished.append((sent, answered, outcome))
            if len(finished) >= concurrency:
                warm.set()
            n += concurrency
            if window_open.is_set():
                answered_in_window += 1
                counted += outcome == "ok"
                progress.set()

    def enough(end: float) -> bool:
        if requests is not None and counted >= requests:
            return True
        return time.perf_counter() >= end and answered_in_window >= min_calls

    # A fresh connection per scrape: a kept-alive one would sit idle for the whole window, and uvicorn closes idle
    # connections after 5 s, which races with the second scrape.
    no_keepalive = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=30.0, limits=no_keepalive) as scraper:
        workers = [asyncio.create_task(worker(i)) for i in range(concurrency)]
        try:
            await asyncio.sleep(warmup)
            await warm.wait()
            first = await snapshot(scraper, watches)
            window_open.set()
            end = first.at + duration
            # The window lasts ``duration`` but never closes before ``min_calls`` answers (a slow batch-32 call
            # may take longer than a --quick window).
            while not enough(end):
                progress.clear()
                remaining = end - time.perf_counter()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(progress.wait(), timeout=remaining if remaining > 0 else None)
            last = await snapshot(scraper, watches)
            stop.set()
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()

    inside = [(s, a, o) for s, a, o in finished if first.at <= a <= last.at]
    ok = [a - s for s, a, o in inside if o == "ok"]
    outcomes = Counter(o for _, _, o in inside if o != "ok")
    window = last.at - first.at
    latencies = np.array(ok) * 1e3 if ok else np.array([np.nan])
    return {
        "window_seconds": window,
        "calls": len(ok),
        "calls_per_second": len(ok) / window,
        "errors": dict(outcomes),
        "latency_ms": {
            "p50": float(np.percentile(latencies, 50)),
            "p90": float(np.percentile(latencies, 90)),
            "p99": float(np.percentile(latencies, 99)),
            "mean": float(np.mean(latencies)),
            "max": float(np.max(latencies)),
        },
        "cpu_seconds": {k: last.cpu[k] - first.cpu[k] for k in first.cpu},
        "counters": {
            name: {k: last.counters[name][k] - first.counters[name][k] for k in first.counters[name]}
            for name in first.counters
        },
    }


def rest_sender(
    client: httpx.AsyncClient, base_url: str, model: str, examples: list[Example], tile: Tile = "auto"
) -> Send:
    """``:detect`` with the n-th example file (cycling), as a client would send it: raw body, its content type."""
    url = f"{base_url}/v1/models/{model}:detect"
    params = {"tile": tile}

    async def send(n: int) -> str:
        example = examples[n % len(examples)]
        try:
            response = await client.post(
                url, content=example.data, params=params, headers={"Content-Type": example.content_type}
            )
        except httpx.HTTPError as err:
            return type(err).__name__
        return "ok" if response.status_code == 200 else f"HTTP {response.status_code}"

    return send


def tfs_sender(channel: Any, model: str, version: int, input_name: str, images: np.ndarray, batch: int) -> Send:
    """``Predict`` with ``batch`` canvases (a request per starting image, built once: the bench measures the server)."""
    import grpc

    from services.gateway.tensors import to_tensor_proto
    from services.gen.tfs import predict_pb2, prediction_service_pb2_grpc

    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)  # type: ignore[no-untyped-call]
    prepared = []
    for start in range(len(images)):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.model_spec.version.value = version
        request.model_spec.signature_name = "serving_default"
        request.inputs[input_name].CopyFrom(to_tensor_proto(batch_of(images, batch, start * batch)))
        prepared.append(request)

    async def send(n: int) -> str:
        try:
            await stub.Predict(prepared[n % len(prepared)], timeout=60.0)
        except grpc.aio.AioRpcError as err:
            return f"gRPC {err.code().name}"
        return "ok"

    return send


def grpc_available() -> bool:
    """Whether this checkout has the gateway's gRPC API and its client (the bench adds gRPC rows when it does)."""
    try:
        for module in ("services.client.rpc", "services.gateway.rpc.server"):
            importlib.import_module(module)
    except ImportError:
        return False
    return True


def grpc_sender(channel: Any, model: str, examples: list[Example], tile: Tile = "auto") -> Send:
    """``spotter.v1.DetectionService/Detect`` on the gateway with the n-th example file (cycling); requests are
    built by the gRPC client's own :func:`services.client.rpc.detect_request`, once per file."""
    import grpc

    from services.client.rpc import detect_request
    from services.gen.spotter.v1 import detection_pb2_grpc

    stub = detection_pb2_grpc.DetectionServiceStub(channel)  # type: ignore[no-untyped-call]
    prepared = [detect_request(e.data, model=model, content_type=e.content_type, tile=tile) for e in examples]

    async def send(n: int) -> str:
        try:
            await stub.Detect(prepared[n % len(prepared)], timeout=60.0)
        except grpc.aio.AioRpcError as err:
            return f"gRPC {err.code().name}"
        return "ok"

    return send


async def _run(options: dict[str, Any]) -> dict[str, Any]:
    kind: str = options["kind"]
    concurrency: int = options["concurrency"]
    watches = [
        Watch(
            name,
            pid,
            options["metrics"].get(name),
            dict(GATEWAY_SERIES if name == "gateway" else MODELSERVER_SERIES),
        )
        for name, pid in options["pids"].items()
    ]
    common = {
        "concurrency": concurrency,
        "warmup": options["warmup"],
        "duration": options["duration"],
        "requests": options["requests"],
        "min_calls": options["min_calls"],
        "watches": watches,
    }
    if kind == "rest":
        examples = load_examples(options["examples"], options["input_size"], options["views"])
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(timeout=60.0, limits=limits) as client:
            send = rest_sender(client, options["url"], options["model"], examples)
            return await generate(send, **common)
    if kind == "tfs":
        import grpc

        examples = load_examples(options["examples"], options["input_size"], options["views"])
        images = canvases(examples, options["input_size"])
        size = 256 * 1024 * 1024
        channel_options = [("grpc.max_send_message_length", size), ("grpc.max_receive_message_length", size)]
        async with grpc.aio.insecure_channel(options["url"], options=channel_options) as channel:
            send = tfs_sender(channel, options["model"], options["version"], "images", images, options["batch"])
            return await generate(send, **common)
    if kind == "grpc":
        import grpc

        examples = load_examples(options["examples"], options["input_size"], options["views"])
        async with grpc.aio.insecure_channel(options["url"]) as channel:
            return await generate(grpc_sender(channel, options["model"], examples), **common)
    raise typer.BadParameter(f"unknown kind {kind!r}")


def _pairs(values: list[str], what: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep:
            raise typer.BadParameter(f"{what} must be NAME=VALUE, not {value!r}")
        pairs[name] = rest
    return pairs


def main(
    kind: Annotated[str, typer.Option(help="rest (gateway :detect), tfs (model server Predict), grpc (gateway)")],
    url: Annotated[str, typer.Option(help="gateway base URL (rest) or host:port (tfs, grpc)")],
    concurrency: Annotated[int, typer.Option(min=1)] = 1,
    duration: Annotated[float, typer.Option(help="measured seconds")] = 5.0,
    warmup: Annotated[float, typer.Option(help="unmeasured seconds first")] = 1.0,
    requests: Annotated[int | None, typer.Option(help="end the window after this many answers")] = None,
    min_calls: Annotated[int, typer.Option(min=1, help="never end the window before this many answers")] = 3,
    model: str = "demo",
    version: Annotated[int, typer.Option(help="model version (tfs)")] = 1,
    batch: Annotated[int, typer.Option(min=1, help="images per Predict (tfs)")] = 1,
    input_size: Annotated[int, typer.Option(help="the model's input size S")] = 320,
    views: Annotated[str, typer.Option(help="how the model sees an image: whole, tiles (its spotter.json)")] = "",
    examples: Annotated[Path, typer.Option(help="folder of example images")] = DEMO_EXAMPLES,
    watch: Annotated[list[str] | None, typer.Option(help="NAME=PID of a process whose CPU time to read")] = None,
    metrics: Annotated[list[str] | None, typer.Option(help="NAME=URL of a watched process's metrics")] = None,
) -> None:
    """Generate closed-loop load for one row of the bench and print what was measured, as JSON."""
    options = {
        "kind": kind,
        "url": url,
        "concurrency": concurrency,
        "duration": duration,
        "warmup": warmup,
        "requests": requests,
        "min_calls": min_calls,
        "model": model,
        "version": version,
        "batch": batch,
        "input_size": input_size,
        "views": views or None,
        "examples": examples,
        "pids": {name: int(pid) for name, pid in _pairs(watch or [], "--watch").items()},
        "metrics": _pairs(metrics or [], "--metrics"),
    }
    result = asyncio.run(_run(options))
    result.update(kind=kind, concurrency=concurrency, batch=batch if kind == "tfs" else 1)
    typer.echo(json.dumps(result))


if __name__ == "__main__":
    typer.run(main)
