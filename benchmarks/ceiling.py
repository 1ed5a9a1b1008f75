"""The ceiling: raw in-process images/s of a SavedModel's ``serving_default`` at each batch size.

Runs in a process of its own (``python -m benchmarks.ceiling``), because it imports TensorFlow and the bench's main
process and load generator use Spotter's TFS stubs, which can't share a process with it. Prints one JSON object on
stdout. The inputs are the demo examples, decoded and letterboxed by ``services.vision`` exactly as the gateway does.
TensorFlow runs with its default thread settings, as the embedded model server does.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from benchmarks.inputs import DEMO_EXAMPLES, batch_of, canvases, load_examples


def measure(
    version_dir: Path,
    examples_dir: Path,
    batches: list[int],
    *,
    seconds: float,
    min_calls: int,
    warmup_calls: int,
) -> dict[str, Any]:
    """images/s of ``serving_default`` at each batch size: ``warmup_calls`` unmeasured calls, then calls for at
    least ``seconds`` and ``min_calls``; outputs are fetched to NumPy, as a server must."""
    import tensorflow as tf

    started = time.perf_counter()
    loaded = tf.saved_model.load(str(version_dir), tags=["serve"])
    load_seconds = time.perf_counter() - started
    serve = loaded.signatures["serving_default"]
    input_name, spec = next(iter(serve.structured_input_signature[1].items()))
    size = int(spec.shape[1])
    images = canvases(load_examples(examples_dir, size), size)

    rows: list[dict[str, Any]] = []
    for batch in batches:
        tensor = tf.constant(batch_of(images, batch))
        for _ in range(warmup_calls):
            {k: v.numpy() for k, v in serve(**{input_name: tensor}).items()}
        durations: list[float] = []
        begin = time.perf_counter()
        while len(durations) < min_calls or time.perf_counter() - begin < seconds:
            t0 = time.perf_counter()
            {k: v.numpy() for k, v in serve(**{input_name: tensor}).items()}
            durations.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - begin
        rows.append(
            {
                "batch": batch,
                "calls": len(durations),
                "seconds": elapsed,
                "images_per_second": len(durations) * batch / elapsed,
                "ms_per_call_p50": statistics.median(durations) * 1e3,
            }
        )
    best = max(rows, key=lambda r: r["images_per_second"])
    return {
        "model_dir": str(version_dir),
        "input_name": input_name,
        "input_size": size,
        "examples": len(images),
        "tensorflow": tf.__version__,
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),  # 0: TF's default (all cores)
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "cpu_count": os.cpu_count(),
        "load_seconds": load_seconds,
        "batches": rows,
        "best": best,
    }


def main(
    model_dir: Annotated[Path, typer.Option(help="a SavedModel version folder (models/demo/1)")],
    examples: Annotated[Path, typer.Option(help="folder of example images")] = DEMO_EXAMPLES,
    batches: Annotated[str, typer.Option(help="batch sizes, comma-separated")] = "1,2,4,8,16,32",
    seconds: Annotated[float, typer.Option(help="measured seconds per batch size (at least)")] = 3.0,
    min_calls: Annotated[int, typer.Option(help="measured calls per batch size (at least)")] = 3,
    warmup_calls: Annotated[int, typer.Option(help="unmeasured calls first, per batch size")] = 2,
) -> None:
    """Print the in-process images/s of serving_default at each batch size, as JSON."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sizes = [int(b) for b in batches.split(",") if b.strip()]
    result = measure(model_dir, examples, sizes, seconds=seconds, min_calls=min_calls, warmup_calls=warmup_calls)
    typer.echo(json.dumps(result))


if __name__ == "__main__":
    typer.run(main)
