"""``make bench``: served images/s of the demo model against its ceiling, batching on and off.

One run, in this order:

1. **Ceiling** (``benchmarks.ceiling``): the best of the model in process (``benchmarks.inprocess``, a TensorFlow
   process of its own per thread setting: a batch-size sweep, then each way of calling it by 1 and 2 callers at the
   best batch) and the model server alone (``benchmarks.loadgen --kind tfs``: ``Predict`` by 1 and 2 clients at that
   batch, one model server per thread setting), with TensorFlow's default threads and tuned ones. The bench says which
   won and what each setting costs, and compares the model server's CPU per image with in process's.
2. **Served** (``benchmarks.loadgen --kind rest|grpc``): the model server with the winning thread setting alone at
   batch 1, then ``:detect`` through real gateways in front of it at each concurrency, batching on (the gateway's
   defaults) and off (``SPOTTER_MAX_BATCH_SIZE=1``); the two gateways run side by side and their rows alternate.

Every load-generator row is a closed loop of ``concurrency`` clients in a separate process, measured for a fixed
window after a warm-up; the generator also reads each server's CPU time and Prometheus counters at the window's
edges, and the bench the machine's load average at each row's start and end. All processes share this machine's
cores: compare ratios, and read the load column (other work on the machine lowers every figure).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from benchmarks.ceiling import DEFAULT_THREADS, Threads, candidates, cpu_comparison, explain, tuned_threads
from benchmarks.cli_support import emit, work_folder
from benchmarks.goals import goals
from benchmarks.inputs import DEMO_EXAMPLES, DEMO_MODEL, REPO, latest_version, model_views
from benchmarks.report import render
from benchmarks.rows import Row, alone_rows, served_rows, summarize
from benchmarks.stack import Gateway, batching_defaults, gateway, model_server

QUICK = {"duration": 0.5, "warmup": 0.3, "min_calls": 1, "sweep_seconds": 0.2}
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
    threads: tuple[str, ...] = (DEFAULT_THREADS, tuned_threads())
    sweep_seconds: float = 3.0


def _last_json(stdout: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError("the child printed nothing")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _child(module: str, args: list[str], log: Path, timeout: float, env: Mapping[str, str] = {}) -> dict[str, Any]:
    """Run ``python -m module args`` (stderr to ``log``, ``env`` added) and return the JSON it printed."""
    log.parent.mkdir(parents=True, exist_ok=True)
    child_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"), **env}
    with log.open("ab") as err:
        done = subprocess.run(
            [sys.executable, "-m", module, *args],
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=REPO,
            env=child_env,
            timeout=timeout,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"{module} exited with {done.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
    return _last_json(done.stdout.decode())


def run_inprocess(
    plan: Plan, threads: Threads, sweep: tuple[int, ...], version_dir: Path, examples: Path, work: Path
) -> dict[str, Any]:
    """``benchmarks.inprocess`` with ``threads``: the sweep over ``sweep``, then its variants at the best batch."""
    args = ["--model-dir", str(version_dir), "--examples", str(examples), "--batches", ",".join(map(str, sweep))]
    args += ["--warmup", str(plan.warmup), "--duration", str(plan.duration), "--min-calls", str(plan.min_calls)]
    args += ["--ways", "function,session", "--callers", "1,2"]
    # The sweep's windows are shorter: they only find the best batch size.
    if len(sweep) > 1:
        args += ["--sweep-duration", str(plan.sweep_seconds)]
    timeout = 300 + (len(sweep) + 4) * (plan.warmup + max(plan.duration, plan.sweep_seconds) + 60)
    return _child("benchmarks.inprocess", args, work / "logs" / "inprocess.log", timeout, threads.env)


@dataclass
class Stack:
    """What the rows run against."""

    model: str
    version: int
    input_size: int
    views: str
    modelserver_pid: int
    modelserver_grpc: str
    modelserver_metrics: str
    gateways: dict[str, Gateway]


def run_row(row: Row, plan: Plan, stack: Stack, examples: Path, work: Path) -> dict[str, Any]:
    """One load-generator row; its raw figures with the machine's 1-minute load average at its start and end."""
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
        "--views",
        stack.views,
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
    start = os.getloadavg()[0]
    raw = _child("benchmarks.loadgen", args, work / "logs" / "loadgen.log", timeout)
    return {**raw, "load": {"start": start, "end": os.getloadavg()[0]}}


def _progress(console: Console, text: str) -> None:
    console.print(f"[dim]bench:[/dim] {text}", highlight=False)


def _protocols(wanted: tuple[str, ...]) -> tuple[str, ...]:
    """The gateway APIs to measure: gRPC only when this checkout's gateway has it."""
    from benchmarks.loadgen import grpc_available

    return tuple(p for p in wanted if p != "grpc" or grpc_available())


def _stack(ms: Any, version_dir: Path, input_size: int, gateways: dict[str, Gateway]) -> Stack:
    return Stack(
        model=version_dir.parent.name,
        version=int(version_dir.name),
        input_size=input_size,
        views=model_views(version_dir),
        modelserver_pid=ms.server.pid,
        modelserver_grpc=ms.grpc_target,
        modelserver_metrics=f"{ms.rest_url}/monitoring/prometheus/metrics",
        gateways=gateways,
    )


def _measure(row: Row, plan: Plan, stack: Stack, examples: Path, work: Path, log: Console) -> dict[str, Any]:
    result = summarize(row, run_row(row, plan, stack, examples, work))
    _progress(
        log,
        f"{row.target} {row.batching or row.threads} c={row.concurrency} b={row.batch}: "
        f"{result['images_per_second']:.1f} images/s (load {result['load']['end']:.1f})",
    )
    return result


def measure_inprocess(
    plan: Plan, version_dir: Path, examples: Path, work: Path, log: Console
) -> dict[str, dict[str, Any]]:
    """``benchmarks.inprocess`` per thread setting: the first sweeps the batch sizes, the others run at its best."""
    found: dict[str, dict[str, Any]] = {}
    sweep = plan.batches
    for name in plan.threads:
        _progress(log, f"in process, threads {name}: batch sizes {', '.join(map(str, sweep))}")
        child = run_inprocess(plan, Threads.parse(name), sweep, version_dir, examples, work)
        found[name] = child
        for entry in [*(child["sweep"] if len(sweep) > 1 else []), *child["variants"]]:
            _progress(
                log,
                f"  {entry['way']} batch {entry['batch']:>3} x{entry['callers']}: "
                f"{entry['images_per_second']:7.1f} images/s (load {entry['load']['end']:.1f})",
            )
        sweep = (int(child["best_batch"]),)
    return found


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
    version, name = int(version_dir.name), version_dir.parent.name
    inprocess = measure_inprocess(plan, version_dir, examples, work, log)
    first = inprocess[plan.threads[0]]
    best_batch, input_size = int(first["best_batch"]), int(first["input_size"])
    settings = {
        "on": {**batching_defaults(), **overrides},
        "off": {**batching_defaults(), **overrides, "max_batch_size": "1"},
    }
    rows: list[dict[str, Any]] = []
    servers: dict[str, tuple[contextlib.ExitStack, Any]] = {}
    try:
        for threads in plan.threads:
            _progress(log, f"starting the model server, threads {threads}")
            held = contextlib.ExitStack()
            env = {**Threads.parse(threads).env, **modelserver_env}
            ms, name = held.enter_context(model_server(version_dir, work, env))
            servers[threads] = (held, ms)
            alone = _stack(ms, version_dir, input_size, {})
            rows += [_measure(row, plan, alone, examples, work, log) for row in alone_rows(best_batch, threads)]
        entries = candidates(inprocess, rows)
        ceiling = explain(entries)
        best = ceiling["best"]
        # The served rows run against the model server with the winning thread setting; the others go.
        for threads, (held, _) in servers.items():
            if threads != best["threads"]:
                held.close()
        with contextlib.ExitStack() as stack:
            ms = servers[best["threads"]][1]
            gateways: dict[str, Gateway] = {}
            for mode in ("on", "off"):
                _progress(log, f"starting the gateway with batching {mode}")
                gateways[mode] = stack.enter_context(gateway(f"gateway-{mode}", ms.grpc_target, work, settings[mode]))
            served = _stack(ms, version_dir, input_size, gateways)
            for row in served_rows(plan.concurrency, _protocols(plan.protocols), best["threads"]):
                rows.append(_measure(row, plan, served, examples, work, log))
    finally:
        for held, _ in servers.values():
            held.close()
    for measured in rows:
        measured["ratio_to_ceiling"] = measured["images_per_second"] / best["images_per_second"]
    result = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0)),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "model": {"name": name, "version": version, "dir": str(version_dir)},
        "plan": asdict(plan),
        "gateway_settings": settings,
        "modelserver_env": modelserver_env,
        "ceiling": {
            "images_per_second": best["images_per_second"],
            "batch": best["batch"],
            "best": best,
            "lines": ceiling["lines"],
            "candidates": entries,
            "cpu": cpu_comparison(entries),
            "inprocess": inprocess,
            "input_size": input_size,
            "examples": first["examples"],
            "tensorflow": first["tensorflow"],
        },
        "rows": rows,
        "note": (
            f"{os.cpu_count()} CPUs: the load generator, the gateway and the model server share them, so the "
            "ratios to the ceiling, not the absolute numbers, are the point; 'load' is the machine's 1-minute load "
            "average at each row's start and end (the bench itself adds up to the number of cores)."
        ),
    }
    result["goals"] = goals(result)
    return result


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


def _threads(text: str) -> tuple[str, ...]:
    try:
        values = tuple(Threads.parse(v).name for v in text.split(",") if v.strip())
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    if not values:
        raise typer.BadParameter("--threads needs at least one setting")
    return tuple(dict.fromkeys(values))


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
    threads: Annotated[
        str, typer.Option(help="TensorFlow thread settings tried for the ceiling: default, INTRAxINTER")
    ] = ",".join(Plan.threads),
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
        typer.Option(help="environment of every model server (over its thread setting), not of the in-process runs"),
    ] = None,
    work_dir: Annotated[Path | None, typer.Option(help="keep logs here (default: a temporary folder)")] = None,
) -> None:
    """Measure served images/s through the gateway against the model's ceiling (in process or the server alone)."""
    plan = Plan(
        duration=duration,
        warmup=warmup,
        requests=requests,
        concurrency=_ints(concurrency, "--concurrency"),
        protocols=_choices(protocols, "--protocols", ("rest", "grpc")),
        batches=_ints(batches, "--batches"),
        threads=_threads(threads),
    )
    if quick:
        plan = Plan(**{**asdict(plan), **QUICK})
    overrides = {key.lower(): value for key, value in _pairs(gateway_setting, "--set").items()}
    log = Console(stderr=True, soft_wrap=True)
    with work_folder(work_dir, "spotter-bench-") as work:
        env = _pairs(modelserver_env, "--modelserver-env")
        result = bench(plan, model_dir.resolve(), examples.resolve(), work, overrides, env, log)
    emit(result, output, as_json, render, width=150)


if __name__ == "__main__":
    typer.run(main)
