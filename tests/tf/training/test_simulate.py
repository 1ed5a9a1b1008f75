"""The simulated-annotator experiment's mechanism (services/training/simulate.py), on a tiny run: each round the
uncertainty strategy labels the pool images whose margin doubt (computed here, apart from the selection code) is
highest, every round labels exactly its budget, and the pool's labels reach training only through the oracle, for
the images chosen. Two training steps per model: the test is about what is chosen and what is trained on, not about
accuracy (``benchmarks/active_learning.py`` measures that)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from services.training.datasets.tfrecord import iter_records
from services.training.digits import DIGITS
from services.training.simulate import Oracle, RoundRecord, SimulationConfig, Start, Trainer, run_strategy, start

CONFIG = SimulationConfig(
    initial=1, pool=3, test=1, budget=4, rounds=2, steps=2, batch_size=8, max_similarity=1.01
)  # 10 labelled to start, 30 in the pool, 10 to test; near-duplicates never skipped, so the choice is exact


class Untouchable(Sequence[str]):
    """Stands in for the pool's labels in the set-up the loop is given: any read of them fails the test."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: Any) -> Any:
        raise AssertionError("the loop read the pool's hidden labels")

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("the loop read the pool's hidden labels")


@pytest.fixture(scope="module")
def trainer() -> Trainer:
    return Trainer(DIGITS, CONFIG)


@pytest.fixture(scope="module")
def begun(trainer: Trainer, tmp_path_factory: pytest.TempPathFactory) -> Start:
    return start(0, trainer, tmp_path_factory.mktemp("start"))


def run(strategy: str, begun: Start, trainer: Trainer, work: Path) -> tuple[list[RoundRecord], Oracle, list[str]]:
    """The strategy's rounds with the hidden labels out of the loop's reach: only the oracle holds them."""
    truth = list(begun.setup.pool_labels)
    hidden = dataclasses.replace(begun.setup, pool_labels=Untouchable(len(truth)))
    oracle = Oracle(truth)
    records = run_strategy(strategy, dataclasses.replace(begun, setup=hidden), oracle, trainer, work)  # type: ignore[arg-type]
    return records, oracle, truth


def margin_doubt(probabilities: np.ndarray) -> np.ndarray:
    top_two = np.sort(probabilities, axis=1)[:, -2:]
    return 1.0 - (top_two[:, 1] - top_two[:, 0])


def trained_labels(folder: Path) -> list[str]:
    """The labels in the records a round's model was trained on, in order."""
    labels = []
    for shard in sorted(folder.glob("train-*.tfrecord")):
        for raw in iter_records(shard):
            example = tf.train.Example.FromString(raw)
            labels.append(example.features.feature["image/class/text"].bytes_list.value[0].decode())
    return labels


def test_uncertainty_labels_the_most_doubtful_images_within_budget(
    begun: Start, trainer: Trainer, tmp_path: Path
) -> None:
    records, oracle, _ = run("uncertainty", begun, trainer, tmp_path)
    assert [r.round for r in records] == [0, 1, 2]
    assert records[1].pool_probabilities is begun.pool_probabilities  # round 1 chooses with the start model
    taken: set[int] = set()
    for record in records[1:]:
        assert record.pool_probabilities is not None
        assert len(record.chosen) == CONFIG.budget
        candidates = [i for i in range(len(begun.setup.pool)) if i not in taken]
        doubt = dict(zip(candidates, margin_doubt(record.pool_probabilities[candidates]), strict=True))
        ranked = sorted(candidates, key=lambda i: -doubt[i])
        assert record.chosen == ranked[: CONFIG.budget], (record.round, [doubt[i] for i in ranked[:6]])
        assert np.allclose(record.chosen_doubt, [doubt[i] for i in record.chosen])
        taken |= set(record.chosen)
    # Round 2 chose with round 1's model, not the start's: its probabilities are another model's.
    assert not np.allclose(records[2].pool_probabilities, begun.pool_probabilities)  # type: ignore[arg-type]
    assert oracle.revealed == records[1].chosen + records[2].chosen


@pytest.mark.parametrize("strategy", ["uncertainty", "cluster_margin", "random"])
def test_training_sees_the_start_and_the_revealed_labels_only(
    strategy: str, begun: Start, trainer: Trainer, tmp_path: Path
) -> None:
    records, oracle, truth = run(strategy, begun, trainer, tmp_path)
    start_labels = [item.label for item in begun.setup.initial]
    revealed: list[int] = []
    for record in records[1:]:
        assert len(record.chosen) == CONFIG.budget and not set(record.chosen) & set(revealed)
        revealed += record.chosen
        assert record.labelled == len(start_labels) + len(revealed)
        seen = trained_labels(tmp_path / strategy / f"round-{record.round}")
        assert seen == start_labels + [truth[i] for i in revealed]
    assert oracle.revealed == revealed  # nothing else was asked of the annotator
    assert len(revealed) == CONFIG.budget * CONFIG.rounds < len(truth)


def test_cluster_margin_chooses_among_the_top_doubt_with_the_current_model(
    begun: Start, trainer: Trainer, tmp_path: Path
) -> None:
    records, _, _ = run("cluster_margin", begun, trainer, tmp_path)
    taken: set[int] = set()
    for record in records[1:]:
        assert record.pool_probabilities is not None and len(record.chosen) == CONFIG.budget
        candidates = [i for i in range(len(begun.setup.pool)) if i not in taken]
        doubt = dict(zip(candidates, margin_doubt(record.pool_probabilities[candidates]), strict=True))
        ranked = sorted(candidates, key=lambda i: -doubt[i])
        assert set(record.chosen) <= set(ranked[: 5 * CONFIG.budget])  # the shortlist: top_factor 5 x budget
        assert record.chosen[0] == ranked[0]  # the most doubtful heads its own cluster
        taken |= set(record.chosen)
    assert begun.pool_embeddings.shape == (len(begun.setup.pool), trainer.embedder.output.shape[-1])


def test_training_length_grows_with_the_labelled_set(begun: Start, tmp_path: Path) -> None:
    config = dataclasses.replace(CONFIG, steps=1, epochs=2.0)  # batches of 8: 2 passes over 10, 14, 18 images
    grown = Trainer(DIGITS, config)
    for n, steps in ((10, 3), (14, 4), (18, 5)):
        labelled = (begun.setup.initial + begun.setup.initial)[:n]
        grown.train(labelled, seed=1, folder=tmp_path / str(n))
        assert int(grown.model.optimizer.iterations.numpy()) == steps == config.steps_for(n)
        assert float(grown.warmup_steps.numpy()) + float(grown.decay_steps.numpy()) == steps


def test_the_oracle_gives_each_label_once() -> None:
    oracle = Oracle(["7", "1", "3"])
    assert oracle.reveal([2, 0]) == ["3", "7"]
    with pytest.raises(ValueError, match="labelled twice"):
        oracle.reveal([0])
    with pytest.raises(ValueError, match="labelled twice"):
        oracle.reveal([1, 1])
    assert oracle.revealed == [2, 0]
