"""The active-learning bench's arithmetic (benchmarks/active_learning.py): the labels random needs to reach a score,
by interpolating its curve, and the per-round summary over seeds; and ``--quick`` end to end, in a process of its
own (it imports TensorFlow; this one does not)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.active_learning import labels_saved, labels_to_reach, summarise, table
from tests.benchmarks.running import run_bench


def test_labels_to_reach_interpolates_the_first_crossing() -> None:
    xs, ys = [30, 70, 110, 150], [0.2, 0.4, 0.6, 0.5]
    assert labels_to_reach(xs, ys, 0.5) == pytest.approx(90.0)
    assert labels_to_reach(xs, ys, 0.6) == pytest.approx(110.0)
    assert labels_to_reach(xs, ys, 0.1) == 30.0  # already there at the start
    assert labels_to_reach(xs, ys, 0.61) is None  # never reached


def rounds(*points: tuple[int, float]) -> list[dict[str, Any]]:
    return [{"round": n, "labelled": x, "accuracy": y, "macro_f1": y} for n, (x, y) in enumerate(points)]


def test_summary_and_labels_saved_over_seeds() -> None:
    runs = {
        "uncertainty": [rounds((10, 0.2), (20, 0.6)), rounds((10, 0.4), (20, 0.8))],
        "random": [rounds((10, 0.2), (20, 0.4), (30, 0.6)), rounds((10, 0.4), (20, 0.6), (30, 0.8))],
    }
    summary = summarise(runs)
    first = summary["uncertainty"][1]
    assert (first["labelled"], first["seeds"], first["min"], first["max"]) == (20, 2, 0.6, 0.8)
    assert first["mean"] == pytest.approx(0.7) and first["std"] == pytest.approx(0.1)
    [saved] = labels_saved(summary)
    assert saved["random_needs"] == pytest.approx(30.0) and saved["saved"] == pytest.approx(10.0)
    runs["random"] = [r[:2] for r in runs["random"]]
    assert labels_saved(summarise(runs))[0]["random_needs"] is None  # random never gets to 0.7 in two rounds
    assert len(table(summarise(runs), "top-1")) == 2 + 2


@pytest.mark.slow
def test_quick_run_writes_the_table_the_json_and_the_plot(repo: Path, tmp_path: Path) -> None:
    # One graph to trace: minutes on a busy 2-core machine.
    done = run_bench(repo, "active_learning", "--quick", "--out", str(tmp_path), timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads((tmp_path / "active_learning.json").read_text())
    for strategy in ("uncertainty", "random"):
        [records] = result["runs"][strategy]
        assert [r["labelled"] for r in records] == [10, 14, 18]
        assert all(len(r["chosen"]) == 4 for r in records[1:])
    assert (tmp_path / "rounds.png").stat().st_size > 0
    assert "| round | labelled |" in done.stdout and "random" in done.stdout
