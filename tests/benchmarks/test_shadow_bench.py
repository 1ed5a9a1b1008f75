"""The shadow-cost bench (``python -m benchmarks.shadow``) with one short round per mode: it must run end to end and
print a row per round and a summary per mode, with the shadow's samples accounted for. Nothing here is about speed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.benchmarks.running import run_bench

pytestmark = pytest.mark.integration


def test_one_round_per_mode_prints_rows_and_a_summary(repo: Path) -> None:
    if not (repo / "models" / "demo" / "1" / "saved_model.pb").exists():
        pytest.skip("the bench serves models/demo/1, which has not been made (make demo)")
    args = ["--clients", "2", "--rates", "1.0", "--repeats", "1", "--duration", "1"]
    done = run_bench(repo, "shadow", *args, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    rows = [line for line in lines if "summary" not in line]
    summaries = [line["summary"] for line in lines if "summary" in line]
    assert [(r["clients"], r["shadow"]) for r in rows] == [(2, None), (2, 1.0)]
    assert all(r["errors"] == {} and r["calls"] > 0 and r["p99_ms"] > 0 for r in rows), rows
    off, on = rows
    assert off["shadow_counts"] == {}  # out of shadow: no figures
    counts = on["shadow_counts"]
    assert counts["failures"] == 0 and counts["samples"] + sum(counts["dropped"].values()) > 0, counts
    assert [(s["clients"], s["shadow"]) for s in summaries] == [(2, None), (2, 1.0)]
