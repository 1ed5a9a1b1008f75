"""``make bench`` in ``--quick`` mode: every row is there and holds numbers, the ceiling is the best of its
candidates, the goal figures and the tables are there. Nothing here is about speed.

The bench starts its own TensorFlow process (the ceiling), model server, gateways and load generators; this test
process only reads the JSON it prints, so it stays TensorFlow-free.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from benchmarks.loadgen import grpc_available
from tests.benchmarks.running import run_bench

pytestmark = pytest.mark.integration

CONCURRENCY = (1, 8, 32)
BATCHES = (1, 2, 4, 8, 16, 32)


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def result(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("bench")
    # A busy 2-core machine: two TensorFlow children, two model servers, two gateways.
    done = run_bench(repo, "serving", "--quick", "--json", "--work-dir", str(work), timeout=900)
    logs = "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in (work / "logs").glob("*.log"))
    assert done.returncode == 0, f"the bench failed:\n{done.stderr[-4000:]}\n{logs}"
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def test_the_sweep_tries_every_batch_size_and_the_rest_runs_at_its_best(result: dict[str, Any]) -> None:
    ceiling = result["ceiling"]
    first, *others = ceiling["inprocess"].values()
    assert [entry["batch"] for entry in first["sweep"]] == list(BATCHES)
    assert all(_positive(entry["images_per_second"]) for entry in first["sweep"])
    best = max(first["sweep"], key=lambda entry: entry["images_per_second"])["batch"]
    assert first["best_batch"] == best
    assert all(other["best_batch"] == best for other in others)
    assert ceiling["input_size"] == 320


def test_the_ceiling_is_the_best_of_in_process_and_the_model_server_alone(result: dict[str, Any]) -> None:
    ceiling = result["ceiling"]
    threads = result["plan"]["threads"]
    assert len(threads) == 2 and threads[0] == "default"  # the default and a tuned setting
    found = {(c["source"], c["way"], c["threads"], c["callers"]) for c in ceiling["candidates"]}
    for setting in threads:
        for callers in (1, 2):
            for source, way in (("in process", "function"), ("in process", "session"), ("model server", "Predict")):
                assert (source, way, setting, callers) in found
    # Every candidate runs at the sweep's best batch, or at batch 1 by 2 callers (concurrent single images).
    swept_best = next(iter(ceiling["inprocess"].values()))["best_batch"]
    assert all(c["batch"] == swept_best or (c["batch"], c["callers"]) == (1, 2) for c in ceiling["candidates"])
    if swept_best != 1:
        singles = {(c["source"], c["threads"]) for c in ceiling["candidates"] if (c["batch"], c["callers"]) == (1, 2)}
        assert singles == {(source, t) for source in ("in process", "model server") for t in threads}
    assert ceiling["images_per_second"] == max(c["images_per_second"] for c in ceiling["candidates"])
    assert ceiling["best"]["images_per_second"] == ceiling["images_per_second"]
    assert ceiling["lines"][0].endswith(f"won: {ceiling['images_per_second']:.1f} images/s")
    # The model server's CPU per image next to in process's, at the same settings.
    assert {(c["threads"], c["callers"]) for c in ceiling["cpu"]} <= {(t, n) for t in threads for n in (1, 2)}
    assert all(_positive(c["ratio"]) for c in ceiling["cpu"])


def test_every_row_is_present(result: dict[str, Any]) -> None:
    best = next(iter(result["ceiling"]["inprocess"].values()))["best_batch"]  # the sweep's (the ceiling's may be 1)
    threads = result["ceiling"]["best"]["threads"]
    rows = {(r["kind"], r["batching"], r["concurrency"], r["batch"], r["threads"]) for r in result["rows"]}
    for setting in result["plan"]["threads"]:
        assert ("tfs", "", 1, best, setting) in rows
        assert ("tfs", "", 2, best, setting) in rows
        if best != 1:
            assert ("tfs", "", 2, 1, setting) in rows  # concurrent single images, a ceiling candidate too
    assert ("tfs", "", 1, 1, threads) in rows  # the served rows' model server alone, at batch 1
    protocols = ("rest", "grpc") if grpc_available() else ("rest",)
    for concurrency in CONCURRENCY:
        for batching in ("on", "off"):
            for kind in protocols:
                assert (kind, batching, concurrency, 1, "") in rows
    for row in result["rows"]:
        assert min(row["load"].values()) >= 0, row


def test_the_goal_figures_are_reported(result: dict[str, Any]) -> None:
    figures = [goal["what"] for goal in result["goals"]]
    assert any(f.startswith("ceiling") for f in figures)
    assert any(f.startswith("model server CPU per image") for f in figures)
    for name in ("REST", "gRPC") if grpc_available() else ("REST",):
        assert f"32 clients, {name}, batching on: images/s / ceiling" in figures
        assert f"32 clients, {name}: p99 batching on vs off" in figures
        assert f"1 client, {name}, batching on: p50 - model server alone at batch 1" in figures
    assert all(goal["met"] in (True, False) for goal in result["goals"][1:])


def test_rows_hold_numbers(result: dict[str, Any]) -> None:
    for row in result["rows"]:
        assert _positive(row["images_per_second"]), row
        assert _positive(row["ratio_to_ceiling"]), row
        assert _positive(row["latency_ms"]["p50"]), row
        assert _positive(row["latency_ms"]["p99"]), row
        assert row["latency_ms"]["p50"] <= row["latency_ms"]["p99"], row
        # On a busy machine the gateway may shed an image at its queue deadline (503, as designed: served in time or
        # refused); any other error is a bug.
        assert set(row["errors"]) <= ({"HTTP 503", "gRPC RESOURCE_EXHAUSTED"} if row["kind"] != "tfs" else set()), row
        # CPU time is read in clock ticks: a --quick window may see none of a process's work, never a negative.
        processes = ("client", "modelserver") if row["kind"] == "tfs" else ("client", "gateway", "modelserver")
        for process in processes:
            assert row["cpu_ms_per_image"][process] >= 0, row


def test_batching_off_sends_one_image_per_predict(result: dict[str, Any]) -> None:
    for row in result["rows"]:
        if row["kind"] != "tfs" and row["batching"] == "off":
            assert row["mean_batch"] in (None, 1.0), row  # None: no batch left inside a --quick window
    assert result["gateway_settings"]["off"]["max_batch_size"] == "1"
    assert int(result["gateway_settings"]["on"]["max_batch_size"]) > 1


def test_the_tables_print(result: dict[str, Any]) -> None:
    # The same result through the table renderer (what `make bench` prints), without running the bench again.
    from rich.console import Console

    from benchmarks.report import render

    console = Console(record=True, width=200)
    render(result, console)
    text = console.export_text()
    for title in ("Batch sizes", "Ceiling", "CPU per image", "Throughput", "Where the time goes", "Issue 15 figures"):
        assert title in text
    assert result["ceiling"]["lines"][0] in text


def test_the_note_reports_the_cpu_count(result: dict[str, Any]) -> None:
    assert result["machine"]["cpu_count"] >= 1
    assert f"{result['machine']['cpu_count']} CPUs" in result["note"]
