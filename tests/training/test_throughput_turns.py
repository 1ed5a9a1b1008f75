"""The order a sweep measures its exports in: every row takes a window at every batch size each round, and the rows
start from a different one each round (so the rows see the same stretches of a shared machine's load)."""

from __future__ import annotations

from collections import Counter

from services.training.throughput import turns


def test_every_row_and_batch_gets_one_window_a_round_and_the_start_rotates() -> None:
    order = turns(3, [1, 8], rounds=4)
    assert Counter(order) == {(row, batch): 4 for row in range(3) for batch in (1, 8)}
    rounds = [order[i : i + 6] for i in range(0, len(order), 6)]
    assert [r[0][0] for r in rounds] == [0, 1, 2, 0]
    assert rounds[1] == [(1, 1), (1, 8), (2, 1), (2, 8), (0, 1), (0, 8)]
    # Every row's first window comes before any row's last: no row is done before another has started.
    assert max(order.index((row, 1)) for row in range(3)) < min(
        len(order) - 1 - order[::-1].index((r, 8)) for r in range(3)
    )


def test_one_row_or_one_round_is_plain_order() -> None:
    assert turns(1, [1, 4], rounds=2) == [(0, 1), (0, 4), (0, 1), (0, 4)]
    assert turns(2, [1], rounds=1) == [(0, 1), (1, 1)]
    assert turns(0, [1], rounds=3) == []
