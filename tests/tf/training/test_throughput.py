"""SavedModels' images/s by batch size in process, measured in turns, and their bytes on disk (what a sweep's table
compares). What is checked is what is measured and in which order (counted through the load-average samples, one
per window), never how fast the machine is."""

from __future__ import annotations

from itertools import count
from pathlib import Path

import numpy as np

from services.training.throughput import measure_in_turns, tree_bytes
from tests.support.tiny_models import build_detector


def test_every_export_and_batch_size_is_measured_in_turns_with_the_load_it_saw(tmp_path: Path) -> None:
    exports = [build_detector(tmp_path / "a" / "1", size=8), build_detector(tmp_path / "b" / "1", size=16)]
    samples = count()
    fed: list[tuple[int, int]] = []

    def canvases(batch: int, size: int) -> np.ndarray:
        fed.append((batch, size))
        return np.zeros((batch, size, size, 3), np.uint8)

    speeds = measure_in_turns(
        exports,
        [1, 2],
        window_seconds=0.0,
        rounds=3,
        min_calls=1,
        canvases=canvases,
        load_average=lambda: next(samples),
    )
    assert sorted(fed) == [(1, 8), (1, 16), (2, 8), (2, 16)]  # each row fed at its own input size, once per batch
    assert [sorted(s.images_per_second) for s in speeds] == [[1, 2], [1, 2]]
    assert all(rate > 0 for s in speeds for rate in s.images_per_second.values())
    assert [s.windows for s in speeds] == [3, 3]
    # Windows 0-1 and 6-9 are the first row's, 2-5 and 10-11 the second's: the rows took turns, not one then the other.
    assert [s.load_average for s in speeds] == [np.mean([0, 1, 6, 7, 8, 9]), np.mean([2, 3, 4, 5, 10, 11])]
    assert [s.load_average_max for s in speeds] == [9, 11]


def test_the_size_on_disk_counts_every_file_once_and_no_link(tmp_path: Path) -> None:
    (tmp_path / "variables").mkdir()
    (tmp_path / "saved_model.pb").write_bytes(b"x" * 1000)
    (tmp_path / "variables" / "variables.data-00000-of-00001").write_bytes(b"y" * 234)
    (tmp_path / "link.pb").symlink_to(tmp_path / "saved_model.pb")
    assert tree_bytes(tmp_path) == 1234
