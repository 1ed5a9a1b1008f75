"""How fast exported SavedModels are in this process, and how big they are on disk: what a sweep's table compares.

Each export's ``serving_default`` signature is called directly (``tf.saved_model.load``, no server in between) with
TensorFlow's default threads, as the worker's machine runs it, every output fetched to NumPy as a server must fetch
it to answer.

On a shared machine the load changes from one minute to the next, so rows measured one after the other are measured
under different loads, and a busy minute can rank a small model below a big one. So every export is loaded first, and
then measured *in turns* (:func:`turns`): ``rounds`` rounds, each giving every row one short window at every batch
size, the rows' order rotated each round. Every row thus sees the same stretches of load; its figure per batch size
is its best window (as ``timeit`` takes the best run: other processes only ever slow a window down), and the 1-minute
load average, sampled after each window, is kept with it to show what the machine was doing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

Canvases = Callable[[int, int], np.ndarray]
"""``(batch, size) -> uint8 [batch, size, size, 3]``: the images a row is fed at a batch size."""


def tree_bytes(folder: Path) -> int:
    """The bytes of every file under ``folder`` (a SavedModel's graph, variables and assets)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


@dataclass(frozen=True, slots=True)
class Speed:
    """One export's measurement: images/s by batch size (its best window), the windows each figure had, and the
    machine's 1-minute load average over its windows (mean and highest)."""

    images_per_second: dict[int, float]
    windows: int
    load_average: float
    load_average_max: float


def random_canvases(seed: int = 0) -> Canvases:
    """Random pixels (when no real images are at hand: a network's cost does not depend on its pixels, a
    detector's decoding of its few detections is a small part of the call)."""
    rng = np.random.default_rng(seed)
    return lambda batch, size: rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)


def turns(rows: int, batches: Sequence[int], rounds: int) -> list[tuple[int, int]]:
    """The order of the windows: ``(row, batch)`` pairs, round after round; in round ``r`` the rows start at row
    ``r % rows``, so no row is always measured first, or always right after the same row."""
    order = []
    for r in range(rounds):
        for k in range(rows):
            order += [((r + k) % rows, batch) for batch in batches]
    return order


def measure_in_turns(
    exports: Sequence[Path],
    batches: Sequence[int],
    *,
    window_seconds: float,
    rounds: int = 5,
    min_calls: int = 2,
    canvases: Canvases | None = None,
    load_average: Callable[[], float] = lambda: os.getloadavg()[0],
) -> list[Speed]:
    """Every export's images/s at each batch size, measured in turns (see the module's text); one per export.

    Each window lasts at least ``window_seconds`` and ``min_calls`` calls; before the first round every
    ``(export, batch)`` gets one unmeasured call (tracing, allocation).
    """
    import tensorflow as tf

    feed = canvases or random_canvases()
    calls: list[dict[int, Callable[[], None]]] = []
    for export_dir in exports:
        serve = tf.saved_model.load(str(export_dir)).signatures["serving_default"]
        name, spec = next(iter(serve.structured_input_signature[1].items()))
        size = int(spec.shape[1])
        calls.append({b: partial(_call, serve, {name: tf.constant(feed(b, size))}) for b in batches})
    for per_batch in calls:
        for call in per_batch.values():
            call()
    best: list[dict[int, float]] = [dict.fromkeys(batches, 0.0) for _ in exports]
    loads: list[list[float]] = [[] for _ in exports]
    for row, batch in turns(len(exports), batches, rounds):
        rate = batch * _window(calls[row][batch], window_seconds, min_calls)
        best[row][batch] = max(best[row][batch], rate)
        loads[row].append(float(load_average()))
    return [
        Speed(images_per_second=speeds, windows=rounds, load_average=float(np.mean(load)), load_average_max=max(load))
        for speeds, load in zip(best, loads, strict=True)
    ]


def _window(call: Callable[[], None], seconds: float, min_calls: int) -> float:
    """Calls per second over one window of at least ``seconds`` and ``min_calls`` calls."""
    calls, started = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - started < seconds:
        call()
        calls += 1
    return calls / (time.perf_counter() - started)


def _call(serve: Callable[..., dict[str, Any]], inputs: dict[str, Any]) -> None:
    """One call, every output fetched to NumPy."""
    for value in serve(**inputs).values():
        value.numpy()
