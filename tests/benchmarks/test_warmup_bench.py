"""The warmup bench (``python -m benchmarks.warmup``) with one round: a version published per warmup kind on a real
model server, each measured. Nothing here is about speed: the rows must be there, hold numbers, and come from
versions whose warmup files were what their kind says (the server's log shows what it replayed).

The bench imports TensorFlow in its own process; this test process stays TensorFlow-free.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.benchmarks.running import run_bench

pytestmark = pytest.mark.integration


def test_one_round_measures_a_new_version_per_warmup_kind(repo: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    done = run_bench(repo, "warmup", "--rounds", "1", "--json", "--work-dir", str(work), timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout)

    assert [(r["kind"], r["version"]) for r in result["rows"]] == [("none", 2), ("synthetic", 3), ("traffic", 4)]
    for row in result["rows"]:
        values = [
            row[k] for k in ("available_s", "first_ms", "first_b8_ms", "steady_ms", "steady_b8_ms", "first_per_steady")
        ]
        assert all(math.isfinite(v) and v > 0 for v in values), row
    assert [entry["kind"] for entry in result["summary"]] == ["none", "synthetic", "traffic"]
    assert result["sample"] >= 1 and result["input_size"] == 320

    log = (work / "logs" / "modelserver.log").read_text()
    messages = [json.loads(line)["message"] for line in log.splitlines() if line.startswith("{")]
    replayed = {m.split("/demo/")[1].split("/")[0]: m for m in messages if m.startswith("Finished reading warmup")}
    assert set(replayed) == {"1", "3", "4"}  # version 2 ("none") had no warmup file
    assert all("Number of warmup records read: 3." in replayed[v] for v in ("3", "4"))
    assert any(m.startswith("No warmup data file found at") and "/demo/2/" in m for m in messages)
