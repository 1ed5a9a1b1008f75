"""A train job with ``init_from_run`` starts from that run's final weights: after one step at a vanishing learning
rate, the new run's trainable weights are the old run's (a run that ignored them would start from a fresh random
initialisation, nowhere near); and a run of another architecture can't lend its weights."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from services.errors import InvalidParameter
from services.jobs.params import TrainParams
from services.store.checks import check_train
from services.store.datasets.annotations import SourceFormat
from services.store.datasets.request import ImportRequest
from services.store.datasets.storage import DatasetStore
from services.store.runs import RunStore
from services.training import pipeline
from services.training.datasets.importer import import_dataset
from services.training.models import load_final
from tests.datasets.fixtures import scenes, write_voc_dataset
from tests.tf.training.test_pipeline import Reporter


def _final(data: Path, run: str) -> list[np.ndarray]:
    return [w.numpy() for w in load_final(RunStore(data).path(run) / "final")[1].trainable_weights]


def test_a_run_started_from_another_run_starts_from_its_final_weights(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    write_voc_dataset(tmp_path / "voc", scenes(count=12))
    import_dataset(ImportRequest(name="shapes", format=SourceFormat.VOC, source=tmp_path / "voc"), DatasetStore(data))
    common = {"dataset": "shapes", "input_size": 64, "batch_size": 4, "weights": "none", "patience": 0}
    first = check_train(TrainParams(run="first", epochs=1, steps_per_epoch=1, **common), data)  # type: ignore[arg-type]
    pipeline.train(first, Reporter(tmp_path, "first"), data)
    old = _final(data, "first")

    second = check_train(
        TrainParams(
            run="second",
            init_from_run="first",
            epochs=1,
            steps_per_epoch=1,
            learning_rate=1e-9,
            warmup_steps=0,
            **common,  # type: ignore[arg-type]
        ),
        data,
    )
    with caplog.at_level(logging.INFO):
        pipeline.train(second, Reporter(tmp_path, "second"), data)
    assert any("run second starts from run first's weights" in r.getMessage() for r in caplog.records)
    new = _final(data, "second")
    assert [w.shape for w in new] == [w.shape for w in old]
    worst = max(float(np.max(np.abs(a - b))) for a, b in zip(new, old, strict=True))
    spread = max(float(np.max(np.abs(w))) for w in old)
    assert worst < 1e-5 < spread, (worst, spread)

    # Another width multiplier means other weight shapes: refused at submit, before anything trains.
    with pytest.raises(InvalidParameter, match="can't lend its weights"):
        check_train(TrainParams(run="third", init_from_run="first", alpha=0.5, **common), data)  # type: ignore[arg-type]
