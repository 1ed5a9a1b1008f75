"""``make bench``: served images/s of the demo model against its in-process ceiling, batching on and off.

One run, in this order:

1. **Ceiling** (``benchmarks.ceiling``, a TensorFlow process of its own, nothing else running): images/s of the
   SavedModel's ``serving_default`` called in process at each batch size; the best one is the ceiling.
2. **Model server alone** (``benchmarks.loadgen --kind tfs``): ``Predict`` over gRPC with pre-letterboxed canvases,
   at batch 1 and at the ceiling's best batch, so the table shows what the gRPC hop and the server cost.
3. **Served** (``benchmarks.loadgen --kind rest``): ``POST :detect`` through a real gateway in front of the same
   model server, at each concurrency, once with batching on (the gateway's defaults) and once off
   (``SPOTTER_MAX_BATCH_SIZE=1``); the two gateways run side by side and their rows alternate.

Every row is a closed loop of ``concurrency`` clients in a separate load-generator process, measured for a fixed
window after a warm-up; the generator also reads each server's CPU time and Prometheus counters at the window's
edges, so the second table says where the time goes. All processes share this machine's cores: compare ratios.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from benchmarks.inputs import DEMO_EXAMPLES, DEMO_MODEL, REPO, latest_version
from benchmarks.report import render
from benchmarks.stack import Gateway, batching_defaults, gateway, model_server

QUICK = {
    "duration": 0.5,
    "warmup": 0.3,
    "min_calls": 1,
    "ceiling_seconds": 0.2,
    "ceiling_min_calls": 1,
    "ceiling_warmup_calls": 1,
}
"""``--quick``: tiny counts, for the smoke test (the structure of the output, never its numbers)."""


@dataclass(frozen=True)
class Plan:
    """How long and how hard each part of the run goes."""

    duration: float = 5.0
    warmup: float = 1.0
    requests: int | None = None
    min_calls: int = 3
    concurrency: tuple[int, ...] = (1, 8, 32)
    protocols: tuple[str, ...] = ("rest", "grpc")
    batches: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    ceiling_seconds: float = 3.0
    ceiling_min_calls: int = 3
    ceiling_warmup_calls: int = 2


@dataclass(frozen=True)
class Row:
    """One measured row: a target (``tfs``: the model server; ``rest``: the gateway), its batching, its load."""

    kind: str
    target: str
    batching: str
    concurrency: int
    batch: int = 1

    @property
    def id(self) -> str:
        mode = f"/{self.batching}" if self.batching else ""
        return f"{self.kind}{mode}/c{self.concurrency}/b{self.batch}"


def _last_json(stdout: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError("the child printed nothing")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _child(module: str, args: list[str], log: Path, timeout: float) -> dict[str, Any]:
    """Run ``python -m module args`` (stderr to ``log``) and return the JSON it printed."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    with log.open("ab") as err:
        done = subprocess.run(
            [sys.executable, "-m", module, *args],
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=REPO,
            env=env,
            timeout=timeout,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"{module} exited with {done.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
    return _last_json(done.stdout.decode())


def run_ceiling(plan: Plan, version_dir: Path, examples: Path, work: Path) -> dict[str, Any]:
    args = [
        "--model-dir",
        str(version_dir),
        "--examples",
        str(examples),
        "--batches",
        ",".join(map(str, plan.batches)),
        "--seconds",
        str(plan.ceiling_seconds),
        "--min-calls",
        str(plan.ceiling_min_calls),
        "--warmup-calls",
        str(plan.ceiling_warmup_calls),
    ]
    timeout = 300 + len(plan.batches) * (plan.ceiling_seconds + 60)
    return _child("benchmarks.ceiling", args, work / "logs" / "ceiling.log", timeout)


@dataclass
class Stack:
    """What the rows run against."""

    model: str
    version: int
    input_size: int
    modelserver_pid: int
    modelserver_grpc: str
    modelserver_metrics: str
    gateways: dict[str, Gateway]


def run_row(row: Row, plan: Plan, stack: Stack, examples: Path, work: Path) -> dict[str, Any]:
    args = [
        "--kind",
        row.kind,
        "--concurrency",
        str(row.concurrency),
        "--duration",
        str(plan.duration),
        "--warmup",
        str(plan.warmup),
        "--model",
        stack.model,
        "--version",
        str(stack.version),
        "--batch",
        str(row.batch),
        "--input-size",
        str(stack.input_size),
        "--examples",
        str(examples),
        "--watch",
        f"modelserver={stack.modelserver_pid}",
        "--metrics",
        f"modelserver={stack.modelserver_metrics}",
    ]
    if plan.requests is not None:
        args += ["--requests", str(plan.requests)]
    args += ["--min-calls", str(plan.min_calls)]
    if row.kind == "tfs":
        args += ["--url", stack.modelserver_grpc]
    else:
        gw = stack.gateways[row.batching]
        args += ["--url", gw.url if row.kind == "rest" else gw.grpc_target]
        args += ["--watch", f"gateway={gw.server.pid}", "--metrics", f"gateway={gw.metrics_url}"]
    timeout = plan.warmup + plan.duration + 180
    return _child("benchmarks.loadgen", args, work / "logs" / "loadgen.log", timeout)


def plan_rows(plan: Plan, best_batch: int, protocols: tuple[str, ...]) -> list[Row]:
    """Model server alone first, then the gateway rows, batching on and off side by side at each concurrency."""
    rows = [Row("tfs", "model server", "", 1, 1)]
    if best_batch != 1:
        rows += [Row("tfs", "model server", "", 1, best_batch)]
    # Two Predicts in flight at the best batch: what a saturated gateway with batching on asks of the server.
    rows += [Row("tfs", "model server", "", 2, best_batch)]
    for concurrency in plan.concurrency:
        for kind in protocols:
            target = "gateway REST" if kind == "rest" else "gateway gRPC"
            rows += [Row(kind, target, mode, concurrency) for mode in ("on", "off")]
    return rows


def _per(value: float, count: float, scale: float = 1.0) -> float | None:
    return value / count * scale if count else None


def summarize(row: Row, raw: dict[str, Any], ceiling: float) -> dict[str, Any]:
    """The row's figures: images/s and its ratio to the ceiling, latency, and where the time and CPU went."""
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
        "ratio_to_ceiling": images_per_second / ceiling,
        "calls": raw["calls"],
        "images": images,
        "window_seconds": window,
        "errors": raw["errors"],
        "latency_ms": raw["latency_ms"],
        "mean_batch": mean_batch,
        "gateway_queue_ms": _per(gw.get("queue_seconds_sum", 0), gw.get("queue_count", 0), 1e3),
        "gateway_predict_ms": _per(gw.get("upstream_seconds_sum", 0), gw.get("upstream_count", 0), 1e3),
        "gateway_decode_ms": _per(gw.get("decode_seconds_sum", 0), gw.get("decode_count", 0), 1e3),
        "modelserver_request_ms": _per(ms.get("request_us_sum", 0), ms.get("request_count", 0), 1e-3),
        "tf_runtime_ms": _per(ms.get("runtime_us_sum", 0), ms.get("runtime_count", 0), 1e-3),
        "cpu_ms_per_image": {k: _per(v, images, 1e3) for k, v in raw["cpu_seconds"].items()},
        "cores_busy": {k: v / window for k, v in raw["cpu_seconds"].items()},
    }


def _progress(console: Console, text: str) -> None:
    console.print(f"[dim]bench:[/dim] {text}", highlight=False)


def _protocols(wanted: tuple[str, ...]) -> tuple[str, ...]:
    """The gateway APIs to measure: gRPC only when this checkout's gateway has it."""
    from benchmarks.loadgen import grpc_available

    return tuple(p for p in wanted if p != "grpc" or grpc_available())


def bench(
    plan: Plan,
    model_dir: Path,
    examples: Path,
    work: Path,
    overrides: dict[str, str],
    modelserver_env: dict[str, str],
    log: Console,
) -> dict[str, Any]:
    """Run everything and return the result (the ``--json`` document)."""
    version_dir = model_dir if model_dir.name.isdigit() else latest_version(model_dir)
    _progress(log, f"ceiling: {version_dir} in process, batch sizes {', '.join(map(str, plan.batches))}")
    ceiling = run_ceiling(plan, version_dir, examples, work)
    best = ceiling["best"]
    for entry in ceiling["batches"]:
        _progress(log, f"  batch {entry['batch']:>3}: {entry['images_per_second']:7.1f} images/s")
    settings = {
        "on": {**batching_defaults(), **overrides},
        "off": {**batching_defaults(), **overrides, "max_batch_size": "1"},
    }
    with contextlib.ExitStack() as stack:
        _progress(log, "starting the model server")
        ms, name = stack.enter_context(model_server(version_dir, work, modelserver_env))
        gateways: dict[str, Gateway] = {}
        for mode in ("on", "off"):
            _progress(log, f"starting the gateway with batching {mode}")
            gateways[mode] = stack.enter_context(gateway(f"gateway-{mode}", ms.grpc_target, work, settings[mode]))
        running = Stack(
            model=name,
            version=int(version_dir.name),
            input_size=int(ceiling["input_size"]),
            modelserver_pid=ms.server.pid,
            modelserver_grpc=ms.grpc_target,
            modelserver_metrics=f"{ms.rest_url}/monitoring/prometheus/metrics",
            gateways=gateways,
        )
        rows = []
        for row in plan_rows(plan, int(best["batch"]), _protocols(plan.protocols)):
            result = summarize(row, run_row(row, plan, running, examples, work), best["images_per_second"])
            rows.append(result)
            _progress(
                log,
                f"{row.target} {row.batching or ''} c={row.concurrency} b={row.batch}: "
                f"{result['images_per_second']:.1f} images/s ({result['ratio_to_ceiling']:.2f} x ceiling)",
            )
    return {
        "machine": {
            "cpu_count": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0)),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "model": {"name": name, "version": int(version_dir.name), "dir": str(version_dir)},
        "plan": asdict(plan),
        "gateway_settings": settings,
        "modelserver_env": modelserver_env,
        "ceiling": {**ceiling, "images_per_second": best["images_per_second"], "batch": best["batch"]},
        "rows": rows,
        "note": (
            f"{os.cpu_count()} CPUs: the load generator, the gateway and the model server share them, so the "
            "ratios to the ceiling, not the absolute numbers, are the point."
        ),
    }


@contextlib.contextmanager
def _work_dir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="spotter-bench-") as tmp:
        yield Path(tmp)


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise typer.BadParameter(f"{what} must be comma-separated integers, not {text!r}") from None
    if not values or min(values) < 1:
        raise typer.BadParameter(f"{what} must be positive integers, not {text!r}")
    return values


def _choices(text: str, what: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    if not values or any(v not in allowed for v in values):
        raise typer.BadParameter(f"{what} takes some of {', '.join(allowed)}, not {text!r}")
    return values


def _pairs(items: list[str] | None, option: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{option} takes NAME=VALUE, not {item!r}")
        pairs[key.strip()] = value.strip()
    return pairs


def main(
    duration: Annotated[float, typer.Option(help="measured seconds per row")] = Plan.duration,
    warmup: Annotated[float, typer.Option(help="unmeasured seconds before each row's window")] = Plan.warmup,
    requests: Annotated[int | None, typer.Option(help="end a row's window after this many answers")] = None,
    concurrency: Annotated[str, typer.Option(help="concurrent clients of the served rows")] = "1,8,32",
    protocols: Annotated[str, typer.Option(help="gateway APIs to measure (grpc if the gateway has it)")] = "rest,grpc",
    batches: Annotated[str, typer.Option(help="batch sizes tried for the ceiling")] = "1,2,4,8,16,32",
    quick: Annotated[bool, typer.Option(help="tiny counts (checks the bench works, not how fast)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON instead of tables")] = False,
    output: Annotated[Path | None, typer.Option(help="also write the JSON result to this file")] = None,
    model_dir: Annotated[Path, typer.Option(help="model folder (its latest version) or a version folder")] = DEMO_MODEL,
    examples: Annotated[Path, typer.Option(help="folder of example images")] = DEMO_EXAMPLES,
    gateway_setting: Annotated[
        list[str] | None, typer.Option("--set", help="gateway setting for both gateways, e.g. max_batch_delay_ms=2")
    ] = None,
    modelserver_env: Annotated[
        list[str] | None,
        typer.Option(help="environment for the model server only, e.g. TF_NUM_INTRAOP_THREADS=1 (not the ceiling)"),
    ] = None,
    work_dir: Annotated[Path | None, typer.Option(help="keep logs here (default: a temporary folder)")] = None,
) -> None:
    """Measure served images/s through the gateway against the model's in-process ceiling."""
    plan = Plan(
        duration=duration,
        warmup=warmup,
        requests=requests,
        concurrency=_ints(concurrency, "--concurrency"),
        protocols=_choices(protocols, "--protocols", ("rest", "grpc")),
        batches=_ints(batches, "--batches"),
    )
    if quick:
        plan = Plan(**{**asdict(plan), **QUICK})
    overrides = {key.lower(): value for key, value in _pairs(gateway_setting, "--set").items()}
    log = Console(stderr=True, soft_wrap=True)
    with _work_dir(work_dir) as work:
        env = _pairs(modelserver_env, "--modelserver-env")
        result = bench(plan, model_dir.resolve(), examples.resolve(), work, overrides, env, log)
    if output is not None:
        output.write_text(json.dumps(result, indent=2) + "\n")
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        out = Console()
        render(result, out if out.is_terminal else Console(width=150))


if __name__ == "__main__":
    typer.run(main)
