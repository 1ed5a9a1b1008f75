"""The model in process: images/s and CPU per image of a SavedModel's ``serving_default`` called directly, with no
server in between. One half of the ceiling (``benchmarks.ceiling`` adds the model server alone and takes the best).

Runs in a process of its own (``python -m benchmarks.inprocess``), because it imports TensorFlow, and the bench's
main process and load generators use Spotter's TFS stubs, which can't share a process with it; TensorFlow reads its
thread settings (``TF_NUM_INTRAOP_THREADS``, ``TF_NUM_INTEROP_THREADS``) once per process, so each thread setting is
a child of its own. Prints one JSON object on stdout.

Measured the way the load generator measures the model server alone (``benchmarks.loadgen --kind tfs``): the same
canvases (the demo examples, decoded and letterboxed by ``services.vision`` as the gateway does it), the same batches
(one per starting image, cycling), a closed loop of ``callers`` threads, ``warmup`` seconds unmeasured, then a
``duration`` window; every output is fetched to NumPy, as a server must fetch them to answer. Two ways to call:

- ``function``: ``tf.saved_model.load`` and its ``serving_default`` signature function (TF2's way);
- ``session``: the model server's own runtime (:class:`services.modelserver.bundle.SessionBundle`: the ``serve``
  graph in a ``tf.compat.v1.Session``, run through a callable, as TFS runs it), without its gRPC server.

CPU per image is this process's CPU time (all threads) over the window, over the images it computed.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from benchmarks.inputs import DEMO_EXAMPLES, batch_of, canvases, load_examples, model_views

Runner = Callable[[np.ndarray], object]
WAYS = ("function", "session")


def _runners(version_dir: Path) -> tuple[dict[str, Runner], str, int, float]:
    """Each way's ``run(batch)``, the input's name and size S, and the seconds both loads took."""
    import tensorflow as tf

    from services.modelserver.bundle import SessionBundle
    from services.modelserver.servable import read_signature_defs

    started = time.perf_counter()
    loaded = tf.saved_model.load(str(version_dir), tags=["serve"])
    serve = loaded.signatures["serving_default"]
    input_name, spec = next(iter(serve.structured_input_signature[1].items()))
    meta_graph = read_signature_defs(version_dir)
    signature = meta_graph.signature_def["serving_default"]
    bundle = SessionBundle(version_dir, meta_graph)
    feed = signature.inputs[input_name].name
    fetches = [info.name for info in signature.outputs.values()]
    load_seconds = time.perf_counter() - started

    def function(batch: np.ndarray) -> object:
        return {name: value.numpy() for name, value in serve(**{input_name: tf.constant(batch)}).items()}

    def session(batch: np.ndarray) -> object:
        return bundle.run({feed: batch}, fetches)

    return {"function": function, "session": session}, input_name, int(spec.shape[1]), load_seconds


def closed_loop(
    run: Runner, batches: list[np.ndarray], *, callers: int, warmup: float, duration: float, min_calls: int
) -> dict[str, Any]:
    """``callers`` threads, each calling ``run`` on the next batch when its last call returned; one window."""
    calls: list[tuple[float, float]] = []  # (started, ended)
    stop = threading.Event()
    lock = threading.Lock()

    failed: list[BaseException] = []

    def caller(index: int) -> None:
        n = index
        try:
            while not stop.is_set():
                t0 = time.perf_counter()
                run(batches[n % len(batches)])
                with lock:
                    calls.append((t0, time.perf_counter()))
                n += callers
        except BaseException as err:  # reported by the main thread, which would otherwise wait for calls forever
            failed.append(err)
            stop.set()

    def check() -> None:
        if failed:
            raise RuntimeError(f"a call of the model failed: {failed[0]!r}") from failed[0]

    threads = [threading.Thread(target=caller, args=(i,), daemon=True) for i in range(callers)]
    for thread in threads:
        thread.start()
    # Warm-up: ``warmup`` seconds and every caller's first call (a new batch shape's first run is the slowest).
    time.sleep(warmup)
    while len(calls) < callers:
        check()
        time.sleep(0.01)
    load_start = os.getloadavg()[0]
    begin, cpu_begin = time.perf_counter(), time.process_time()
    with lock:
        seen = len(calls)
    while time.perf_counter() - begin < duration or len(calls) - seen < min_calls:
        check()
        time.sleep(0.01)
    end, cpu_end = time.perf_counter(), time.process_time()
    stop.set()
    for thread in threads:
        thread.join()
    inside = [e - s for s, e in calls if begin <= e <= end]
    images = len(inside) * len(batches[0])
    return {
        "callers": callers,
        "calls": len(inside),
        "window_seconds": end - begin,
        "images_per_second": images / (end - begin),
        "cpu_ms_per_image": (cpu_end - cpu_begin) / images * 1e3 if images else None,
        "ms_per_call_p50": statistics.median(inside) * 1e3 if inside else None,
        "load": {"start": load_start, "end": os.getloadavg()[0]},
    }


def measure(
    version_dir: Path,
    examples_dir: Path,
    sweep: list[int],
    *,
    ways: list[str],
    callers: list[int],
    warmup: float,
    duration: float,
    sweep_duration: float,
    min_calls: int,
) -> dict[str, Any]:
    """The sweep (``function``, one caller, each batch size in ``sweep``), then every way x callers at the sweep's
    best batch size, and every way at batch 1 by the most callers (on a small CPU, concurrent single-image calls can
    beat one batched stream)."""
    import tensorflow as tf

    runners, input_name, size, load_seconds = _runners(version_dir)
    images = canvases(load_examples(examples_dir, size, model_views(version_dir)), size)

    def entry(way: str, batch: int, count: int, seconds: float = duration) -> dict[str, Any]:
        prepared = [batch_of(images, batch, start * batch) for start in range(len(images))]
        timing = closed_loop(
            runners[way], prepared, callers=count, warmup=warmup, duration=seconds, min_calls=min_calls
        )
        return {"way": way, "batch": batch, **timing}

    # A sweep of one batch size is measured as the variants are; a longer sweep has its own (shorter) windows.
    swept = [entry("function", batch, 1, duration if len(sweep) == 1 else sweep_duration) for batch in sweep]
    best = max(swept, key=lambda e: e["images_per_second"])
    variants = [
        next((e for e in swept if e["batch"] == best["batch"]), None)
        if (way, count) == ("function", 1) and len(sweep) == 1
        else entry(way, best["batch"], count)
        for way in ways
        for count in callers
    ]
    if best["batch"] != 1 and max(callers) > 1:
        variants += [entry(way, 1, max(callers)) for way in ways]
    return {
        "model_dir": str(version_dir),
        "input_name": input_name,
        "input_size": size,
        "examples": len(images),
        "tensorflow": tf.__version__,
        "threads": {
            "intra_op_env": os.environ.get("TF_NUM_INTRAOP_THREADS"),
            "inter_op_env": os.environ.get("TF_NUM_INTEROP_THREADS"),
            "cpu_count": os.cpu_count(),
        },
        "load_seconds": load_seconds,
        "sweep": swept,
        "best_batch": best["batch"],
        "variants": [v for v in variants if v is not None],
    }


def _list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def main(
    model_dir: Annotated[Path, typer.Option(help="a SavedModel version folder (models/demo/1)")],
    examples: Annotated[Path, typer.Option(help="folder of example images")] = DEMO_EXAMPLES,
    batches: Annotated[str, typer.Option(help="batch sizes of the sweep, comma-separated")] = "1,2,4,8,16,32",
    ways: Annotated[str, typer.Option(help="ways to call at the best batch: function, session")] = "function,session",
    callers: Annotated[str, typer.Option(help="concurrent callers at the best batch")] = "1,2",
    warmup: Annotated[float, typer.Option(help="unmeasured seconds before each window")] = 1.0,
    duration: Annotated[float, typer.Option(help="measured seconds per window (at least)")] = 5.0,
    sweep_duration: Annotated[float, typer.Option(help="measured seconds per sweep window (at least)")] = 3.0,
    min_calls: Annotated[int, typer.Option(help="measured calls per window (at least)")] = 3,
) -> None:
    """Print the in-process images/s and CPU per image of serving_default, as JSON."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    chosen = _list(ways)
    if any(way not in WAYS for way in chosen):
        raise typer.BadParameter(f"--ways takes some of {', '.join(WAYS)}, not {ways!r}")
    result = measure(
        model_dir,
        examples,
        [int(b) for b in _list(batches)],
        ways=chosen,
        callers=[int(c) for c in _list(callers)],
        warmup=warmup,
        duration=duration,
        sweep_duration=sweep_duration,
        min_calls=min_calls,
    )
    typer.echo(json.dumps(result))


if __name__ == "__main__":
    typer.run(main)
