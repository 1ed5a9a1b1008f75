"""``make bench`` in ``--quick`` mode: every row is there and holds numbers. Nothing here is about speed.

The bench starts its own TensorFlow process (the ceiling), model server, gateways and load generators; this test
process only reads the JSON it prints, so it stays TensorFlow-free.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.loadgen import grpc_available

pytestmark = pytest.mark.integration

CONCURRENCY = (1, 8, 32)
BATCHES = (1, 2, 4, 8, 16, 32)


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def result(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.serving", "--quick", "--json", "--work-dir", str(work)],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    logs = "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in (work / "logs").glob("*.log"))
    assert done.returncode == 0, f"the bench failed:\n{done.stderr[-4000:]}\n{logs}"
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def test_ceiling_tries_every_batch_size_and_picks_the_best(result: dict[str, Any]) -> None:
    ceiling = result["ceiling"]
    assert [entry["batch"] for entry in ceiling["batches"]] == list(BATCHES)
    assert all(_positive(entry["images_per_second"]) for entry in ceiling["batches"])
    best = max(ceiling["batches"], key=lambda entry: entry["images_per_second"])
    assert ceiling["batch"] == best["batch"]
    assert ceiling["images_per_second"] == best["images_per_second"]
    assert ceiling["input_size"] == 320


def test_every_row_is_present(result: dict[str, Any]) -> None:
    best = result["ceiling"]["batch"]
    rows = {(r["kind"], r["batching"], r["concurrency"], r["batch"]) for r in result["rows"]}
    assert ("tfs", "", 1, 1) in rows
    assert ("tfs", "", 1, best) in rows
    assert ("tfs", "", 2, best) in rows
    protocols = ("rest", "grpc") if grpc_available() else ("rest",)
    for concurrency in CONCURRENCY:
        for batching in ("on", "off"):
            for kind in protocols:
                assert (kind, batching, concurrency, 1) in rows


def test_rows_hold_numbers(result: dict[str, Any]) -> None:
    for row in result["rows"]:
        assert _positive(row["images_per_second"]), row
        assert _positive(row["ratio_to_ceiling"]), row
        assert _positive(row["latency_ms"]["p50"]), row
        assert _positive(row["latency_ms"]["p99"]), row
        assert row["latency_ms"]["p50"] <= row["latency_ms"]["p99"], row
        assert row["errors"] == {}, row
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


def test_the_note_reports_the_cpu_count(result: dict[str, Any]) -> None:
    assert result["machine"]["cpu_count"] >= 1
    assert f"{result['machine']['cpu_count']} CPUs" in result["note"]
