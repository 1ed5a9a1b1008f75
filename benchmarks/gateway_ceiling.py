"""The gateway's own ceiling: images/s per core and CPU ms per image with an instant upstream
(``python -m benchmarks.gateway_ceiling``; ``make bench`` runs it after ``benchmarks.serving``).

With TensorFlow Serving on a GPU the model takes a millisecond or two per image, and the gateway's CPU per image
decides how many gateway cores one GPU needs. Here the model server is :mod:`benchmarks.instant_upstream`, which
answers every ``Predict`` at once with the demo model's recorded outputs, so what a row costs is the gateway's work:
HTTP or gRPC, decoding, letterboxing, tensor packing, batching, the Predict call, boxes and the JSON or protobuf
answer. One run:

1. **Record** the real model's answers once (the embedded model server on the demo model; its idle RSS is kept).
2. **Inputs**: the demo's 320x320 scenes, its JPEGs (``scene-320``) and its PNGs (``scene-320-png``) apart, sent with
   ``tile=auto`` (one view each); camera-like JPEGs with EXIF at 1280x720 and 1920x1080 (:mod:`benchmarks.photos`),
   sent with ``tile=off``: one whole-image view, as a detector that sees whole images takes them (the demo model
   is a tiling one, which would cut a photo into 16 views).
3. **Floor**: the bare decode + letterbox of the same bytes in this process, exactly as the gateway calls them
   (``services.vision``): the least CPU any gateway needs per image. *x floor* is a row's gateway CPU over it.
4. **Rows**: for each input set, protocol and number of gateway processes (``SPOTTER_GATEWAY_WORKERS``), a closed
   loop of ``concurrency`` clients in its own process (:mod:`benchmarks.gateway_load`). The CPU time of every
   gateway process (``/proc``, all threads; the workers too) is read at the window's edges; RSS is sampled through
   the window. Each row prints the machine's load average: the machine may be shared.
5. **Memory**: the gateway's RSS under load, the model server's and the RQ worker's while idle.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import psutil
import typer
from rich.console import Console

from benchmarks.cli_support import emit, work_folder
from benchmarks.gateway_report import render
from benchmarks.inputs import DEMO_EXAMPLES, DEMO_MODEL, REPO
from benchmarks.memory import RssSampler, idle_worker_rss
from benchmarks.photos import CAMERA_SIZES, camera_jpeg
from benchmarks.stack import Gateway
from benchmarks.stack import gateway as start_gateway
from services.processes import ServerProcess, free_port, port_open, start_server
from services.vision.images import decode_image
from services.vision.letterbox import letterbox

PHOTOS_PER_SIZE = 4
GOALS_MS = {"scene-320": 1.5, "scene-320-png": 1.5, "photo-1080p": 4.0}
"""The issue's goals: gateway CPU ms per image, all included."""


@dataclass(frozen=True)
class Plan:
    duration: float = 5.0
    warmup: float = 1.5
    min_calls: int = 3
    concurrency: int = 32
    floor_seconds: float = 2.0
    inputs: tuple[str, ...] = ("scene-320", "scene-320-png", "photo-720p", "photo-1080p")
    protocols: tuple[str, ...] = ("rest", "grpc")
    workers: tuple[int, ...] = (1, 2)


QUICK = {"duration": 0.5, "warmup": 0.3, "min_calls": 1, "floor_seconds": 0.1}


@dataclass(frozen=True)
class InputSet:
    name: str
    folder: Path
    tile: str
    files: int
    mean_bytes: float
    size: str


def make_inputs(work: Path, examples: Path, input_size: int, names: tuple[str, ...]) -> dict[str, InputSet]:
    """Write each input set's files under ``work/inputs/<name>/``."""
    from PIL import Image

    sets: dict[str, InputSet] = {}
    for name in names:
        folder = work / "inputs" / name
        folder.mkdir(parents=True, exist_ok=True)
        if name.startswith("scene-320"):
            suffix = ".png" if name.endswith("-png") else ".jpg"
            for path in sorted(examples.iterdir()):
                if path.name.startswith("scene-") and path.suffix.lower() == suffix:
                    with Image.open(path) as image:
                        if max(image.size) <= input_size:
                            shutil.copy(path, folder / path.name)
            tile, size = "auto", f"{input_size}x{input_size}"
        else:
            width, height = CAMERA_SIZES[name]
            for seed in range(PHOTOS_PER_SIZE):
                (folder / f"{name}-{seed}.jpg").write_bytes(camera_jpeg(width, height, seed))
            tile, size = "off", f"{width}x{height}"
        sizes = [p.stat().st_size for p in folder.iterdir()]
        if not sizes:
            raise FileNotFoundError(f"no input for {name} in {examples}")
        sets[name] = InputSet(name, folder, tile, len(sizes), sum(sizes) / len(sizes), size)
    return sets


def floor_ms(inputs: InputSet, input_size: int, seconds: float) -> float:
    """CPU ms per image of the bare decode + letterbox, as the gateway does them (reduced JPEG decoding where the
    gateway uses it: a whole-image view, ``tile=off``)."""
    blobs = [p.read_bytes() for p in sorted(inputs.folder.iterdir())]
    target = input_size if inputs.tile == "off" else None
    done = 0
    start = time.process_time()
    deadline = time.perf_counter() + seconds
    while done < len(blobs) or time.perf_counter() < deadline:
        data = blobs[done % len(blobs)]
        decoded = decode_image(data, content_type=None, max_bytes=len(data), max_pixels=50_000_000, target_size=target)
        letterbox(decoded, input_size)
        done += 1
    return (time.process_time() - start) / done * 1e3


@contextlib.contextmanager
def instant_upstream(recording: Path, work: Path) -> Iterator[tuple[ServerProcess, str]]:
    """Serve ``recording`` with :mod:`benchmarks.instant_upstream` on a free port; yields it and its target."""
    port = free_port()
    server = start_server(
        "instant-upstream",
        [
            sys.executable,
            "-m",
            "benchmarks.instant_upstream",
            "serve",
            "--recording",
            str(recording),
            "--port",
            str(port),
        ],
        log_dir=work / "logs",
        ready=lambda: port_open(port),
        cwd=REPO,
        timeout=60.0,
    )
    try:
        yield server, f"127.0.0.1:{port}"
    finally:
        server.stop()


def gateway(name: str, tfs_grpc: str, work: Path, workers: int) -> contextlib.AbstractContextManager[Gateway]:
    """``spotter gateway`` with ``workers`` processes on free ports in front of ``tfs_grpc``, its batching defaults."""
    return start_gateway(name, tfs_grpc, work, {"gateway_workers": str(workers)})


def gateway_pids(pid: int) -> list[int]:
    """The gateway's process and its children (the workers, when it supervises several)."""
    parent = psutil.Process(pid)
    return [pid, *(c.pid for c in parent.children(recursive=True))]


def _child_json(args: list[str], log: Path, timeout: float) -> dict[str, Any]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as err:
        done = subprocess.run(
            [sys.executable, *args], stdout=subprocess.PIPE, stderr=err, cwd=REPO, timeout=timeout, check=False
        )
    if done.returncode != 0:
        raise RuntimeError(f"{args[:3]} exited with {done.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
    lines = [line for line in done.stdout.decode().splitlines() if line.strip()]
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def run_row(
    plan: Plan, inputs: InputSet, protocol: str, workers: int, target: str, pids: list[int], upstream: int, work: Path
) -> dict[str, Any]:
    watches = [f"gateway-{pid}={pid}" for pid in pids] + [f"upstream={upstream}"]
    args = ["-m", "benchmarks.gateway_load", "--protocol", protocol, "--url", target, "--folder", str(inputs.folder)]
    args += ["--tile", inputs.tile, "--concurrency", str(plan.concurrency), "--duration", str(plan.duration)]
    args += ["--warmup", str(plan.warmup), "--min-calls", str(plan.min_calls)]
    for item in watches:
        args += ["--watch", item]
    with RssSampler(pids) as rss:
        raw = _child_json(args, work / "logs" / "gateway_load.log", plan.warmup + plan.duration + 120)
    load = os.getloadavg()
    cpu = raw["cpu_seconds"]
    images = raw["calls"]
    gateway_cpu = sum(v for k, v in cpu.items() if k.startswith("gateway-"))
    per = (lambda seconds: seconds / images * 1e3) if images else (lambda _: None)
    return {
        "input": inputs.name,
        "protocol": protocol,
        "workers": workers,
        "concurrency": plan.concurrency,
        "images": images,
        "images_per_second": raw["calls_per_second"],
        "errors": raw["errors"],
        "latency_ms": raw["latency_ms"],
        "gateway_cpu_ms_per_image": per(gateway_cpu),
        "gateway_cores_busy": gateway_cpu / raw["window_seconds"],
        "images_per_core_second": images / gateway_cpu if gateway_cpu else None,
        "upstream_cpu_ms_per_image": per(cpu.get("upstream", 0.0)),
        "client_cpu_ms_per_image": per(cpu.get("client", 0.0)),
        "gateway_rss_max_mb": {str(p): v / 1e6 for p, v in rss.max.items()},
        "gateway_rss_last_mb": {str(p): v / 1e6 for p, v in rss.last.items()},
        "loadavg": list(load),
    }


def record(recording: Path | None, model_dir: Path, examples: Path, work: Path) -> Path:
    """The recording to serve: ``recording`` when given and present, else a fresh one in ``work``."""
    if recording is not None and recording.exists():
        return recording
    out = recording or work / "recording.json"
    args = ["-m", "benchmarks.instant_upstream", "record", "--output", str(out), "--model-dir", str(model_dir)]
    args += ["--examples", str(examples), "--work-dir", str(work)]
    _child_json(args, work / "logs" / "record.log", 300)
    return out


def bench(
    plan: Plan, model_dir: Path, examples: Path, work: Path, recording: Path | None, worker_redis: str, log: Console
) -> dict[str, Any]:
    log.print("[dim]gateway ceiling:[/dim] recording the model's answers (embedded model server)", highlight=False)
    recorded_path = record(recording, model_dir, examples, work)
    recorded = json.loads(recorded_path.read_text())
    size = int(recorded["input_size"])
    inputs = make_inputs(work, examples, size, plan.inputs)
    floors = {name: floor_ms(s, size, plan.floor_seconds) for name, s in inputs.items()}
    rows: list[dict[str, Any]] = []
    with instant_upstream(recorded_path, work) as (upstream, upstream_target):
        for workers in plan.workers:
            with gateway(f"gateway-w{workers}", upstream_target, work, workers) as gw:
                pids = gateway_pids(gw.server.pid)
                for name, input_set in inputs.items():
                    for protocol in plan.protocols:
                        target = gw.url if protocol == "rest" else gw.grpc_target
                        row = run_row(plan, input_set, protocol, workers, target, pids, upstream.pid, work)
                        row["floor_ms_per_image"] = floors[name]
                        cpu = row["gateway_cpu_ms_per_image"]
                        row["ratio_to_floor"] = cpu / floors[name] if cpu else None
                        rows.append(row)
                        log.print(
                            f"[dim]gateway ceiling:[/dim] {name} {protocol} x{workers}: "
                            f"{row['images_per_second']:.1f} images/s, {cpu or 0:.2f} CPU ms/image, "
                            f"load {row['loadavg'][0]:.2f}",
                            highlight=False,
                        )
    worker_rss = idle_worker_rss(work, worker_redis)
    return {
        "model": {"name": recorded["model"], "version": recorded["version"], "input_size": size},
        "machine": {"cpu_count": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0))},
        "plan": asdict(plan),
        "inputs": {k: {**asdict(v), "folder": str(v.folder)} for k, v in inputs.items()},
        "floor_ms_per_image": floors,
        "goals_ms_per_image": GOALS_MS,
        "rows": rows,
        "memory_mb": {
            "modelserver_idle": recorded.get("modelserver_idle_rss_bytes", 0) / 1e6 or None,
            "worker_idle": worker_rss,
        },
    }


def _choices(text: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    if not values or any(v not in allowed for v in values):
        raise typer.BadParameter(f"{what} takes some of {', '.join(allowed)}, not {text!r}")
    return values


def main(
    duration: Annotated[float, typer.Option(help="measured seconds per row")] = Plan.duration,
    warmup: Annotated[float, typer.Option(help="unmeasured seconds before each row")] = Plan.warmup,
    concurrency: Annotated[int, typer.Option(min=1, help="closed-loop clients")] = Plan.concurrency,
    inputs: Annotated[str, typer.Option(help="input sets")] = ",".join(Plan.inputs),
    protocols: Annotated[str, typer.Option(help="gateway APIs")] = "rest,grpc",
    workers: Annotated[str, typer.Option(help="gateway processes (SPOTTER_GATEWAY_WORKERS) per row")] = "1,2",
    quick: Annotated[bool, typer.Option(help="tiny counts (checks the bench works, not how fast)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON instead of tables")] = False,
    output: Annotated[Path | None, typer.Option(help="also write the JSON result to this file")] = None,
    recording: Annotated[Path | None, typer.Option(help="reuse (or write) the upstream's recording here")] = None,
    model_dir: Annotated[Path, typer.Option(help="model folder or version folder")] = DEMO_MODEL,
    examples: Annotated[Path, typer.Option(help="folder with the 320-px scenes")] = DEMO_EXAMPLES,
    work_dir: Annotated[Path | None, typer.Option(help="keep logs and inputs here")] = None,
    worker_redis_url: Annotated[
        str, typer.Option(help="Redis of the idle worker whose RSS is read: a database of its own (no real jobs)")
    ] = "redis://127.0.0.1:6379/15",
) -> None:
    """Measure the gateway's own CPU per image and images/s per core against an instant upstream."""
    try:
        worker_counts = tuple(int(w) for w in workers.split(",") if w.strip())
    except ValueError:
        raise typer.BadParameter(f"--workers takes integers, not {workers!r}") from None
    if not worker_counts or min(worker_counts) < 1:
        raise typer.BadParameter(f"--workers takes positive integers, not {workers!r}")
    plan = Plan(
        duration=duration,
        warmup=warmup,
        concurrency=concurrency,
        inputs=_choices(inputs, Plan.inputs, "--inputs"),
        protocols=_choices(protocols, ("rest", "grpc"), "--protocols"),
        workers=worker_counts,
    )
    if quick:
        plan = replace(plan, **QUICK)  # type: ignore[arg-type]
    log = Console(stderr=True, soft_wrap=True)
    with work_folder(work_dir, "spotter-gwceiling-") as work:
        result = bench(plan, model_dir.resolve(), examples.resolve(), work, recording, worker_redis_url, log)
    emit(result, output, as_json, render, width=160)


if __name__ == "__main__":
    typer.run(main)
