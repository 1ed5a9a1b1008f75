"""A sweep's table: the Pareto front (no row at least as accurate and as fast as another, better in one), the best
batch, and the Markdown and CSV forms."""

from __future__ import annotations

import csv
import io
from dataclasses import replace

from services.training.sweep_table import COLUMNS, SweepRow, csv_text, markdown, pareto_front, with_fronts


def _row(alpha: float, size: int, metric: float | None, speeds: dict[int, float]) -> SweepRow:
    return SweepRow(
        alpha=alpha,
        input_size=size,
        run=f"r-a{alpha:g}-s{size}",
        train_job="t",
        evaluate_job="e",
        metric=metric,
        images_per_second=speeds,
        saved_model_bytes=1000,
        parameters=10,
    )


def test_the_front_keeps_the_rows_no_other_row_beats_in_both() -> None:
    points = [(0.5, 100.0), (0.6, 80.0), (0.55, 70.0), (0.6, 80.0), (0.7, 10.0), (0.4, 100.0)]
    # (0.55, 70) loses to (0.6, 80); (0.4, 100) to (0.5, 100); equal points (0.6, 80) both stay.
    assert pareto_front(points) == [True, True, False, True, True, False]
    assert pareto_front([]) == []
    assert pareto_front([(0.1, 1.0)]) == [True]


def test_rows_get_a_front_at_their_best_batch_and_one_at_batch_1() -> None:
    small = _row(0.35, 96, 0.4, {1: 50.0, 4: 200.0, 8: 180.0})
    big = _row(1.0, 224, 0.8, {1: 60.0, 4: 70.0, 8: 90.0})
    middle = _row(0.5, 128, 0.5, {1: 40.0, 4: 100.0, 8: 150.0})
    rows = with_fronts([small, big, middle])
    assert [r.best_batch for r in rows] == [4, 8, 8]
    assert [r.pareto for r in rows] == [True, True, True]  # 150 images/s is between 90 and 200, 0.5 between
    # At batch 1 the big model is both the fastest and the most accurate: it alone is on that front.
    assert [r.pareto_batch1 for r in rows] == [False, True, False]
    slower = with_fronts([small, _row(0.5, 128, 0.35, {1: 40.0, 4: 100.0})])
    assert [r.pareto for r in slower] == [True, False]


def test_a_row_without_a_metric_counts_as_zero_and_a_tie_takes_the_smaller_batch() -> None:
    rows = with_fronts([_row(0.35, 96, None, {1: 500.0, 4: 500.0}), _row(0.5, 96, 0.3, {1: 100.0})])
    assert rows[0].best_batch == 1 and rows[0].pareto and rows[1].pareto  # fastest, and most accurate


def test_markdown_and_csv_have_a_line_per_row_with_the_metric_named() -> None:
    rows = with_fronts([_row(0.35, 96, 0.41234, {1: 50.0, 4: 200.0}), _row(1.0, 224, 0.8, {1: 60.0})])
    text = markdown(rows, "map50")
    lines = text.strip().splitlines()
    assert len(lines) == 4 and "| alpha | input_size | map50 |" in lines[0]
    assert "| 0.35 | 96 | 0.4123 | 50.0 | 4 | 200.0 |" in lines[2]
    assert lines[0].split(" | ")[COLUMNS.index("load_average")] == "load_average"
    loaded = markdown([replace(rows[0], load_average=3.25)], "map50").splitlines()[2].split(" | ")
    assert loaded[COLUMNS.index("load_average")] == "3.2"
    parsed = list(csv.DictReader(io.StringIO(csv_text(rows, "accuracy"))))
    assert [r["run"] for r in parsed] == ["r-a0.35-s96", "r-a1-s224"]
    assert parsed[0]["accuracy"] == "0.41234" and parsed[0]["best_batch"] == "4" and parsed[1]["pareto"] == "True"
    body = rows[0].to_json()
    assert body["images_per_second"] == {"1": 50.0, "4": 200.0} and body["label"] == "0.35@96"
