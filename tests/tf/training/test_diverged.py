"""A fit whose loss becomes NaN or infinite fails with ``TrainingDiverged`` (a clear message: where, what, the
learning rate), instead of finishing with ``val_loss nan`` and NaN weights (issue 11 item 5). The NaN is real: a
batch with a NaN target goes through Keras's fit loop (the one the train job runs, :func:`fitting.fit_run`), and the
epoch it happens in is never checkpointed."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from services.errors import TrainingDiverged
from services.training.checkpoints import list_checkpoints
from services.training.detector import DetectorConfig
from services.training.fitting import FitPlan, FitState, fit_run
from services.training.train import TrainConfig, fit_detector

STEPS = 2


def tiny_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    return model


def batches(nan_at: int | None, count: int) -> tf.data.Dataset:
    """``count`` batches of 4; batch ``nan_at`` (from 0) has a NaN target, as a NaN box gives a NaN target."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(count * 4, 8)).astype(np.float32)
    y = rng.normal(size=(count * 4, 1)).astype(np.float32)
    if nan_at is not None:
        y[nan_at * 4] = np.nan
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(4)


def plan(tmp_path: Path, epochs: int) -> FitPlan:
    return FitPlan(epochs=epochs, steps_per_epoch=STEPS, patience=0, checkpoints=tmp_path / "ckpt", tensorboard=None)


def test_a_nan_training_loss_fails_the_fit_and_its_epoch_is_not_checkpointed(tmp_path: Path) -> None:
    reported: list[dict] = []
    with pytest.raises(TrainingDiverged) as caught:
        fit_run(
            tiny_model(),
            batches(nan_at=STEPS, count=2 * STEPS).repeat(),  # epoch 1 is clean; epoch 2's first step is NaN
            None,
            plan(tmp_path, epochs=3),
            state=FitState(),
            initial_epoch=0,
            batch_size=4,
            report=lambda **fields: reported.append(fields),
            learning_rate=0.01,
        )
    error = caught.value
    assert error.code == "training_diverged"
    assert "the loss became nan at epoch 2 step 1" in error.message and "learning_rate 0.01" in error.message
    assert [c.epoch for c in list_checkpoints(tmp_path / "ckpt")] == [1]  # nothing saved from the diverged epoch
    assert all(np.isfinite(r["metrics"]["loss"]) for r in reported if "loss" in r.get("metrics", {}))


def test_a_nan_validation_loss_fails_the_fit_before_the_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(TrainingDiverged, match="the validation loss became nan at epoch 1"):
        fit_run(
            tiny_model(),
            batches(nan_at=None, count=STEPS).repeat(),
            batches(nan_at=0, count=1),
            plan(tmp_path, epochs=2),
            state=FitState(),
            initial_epoch=0,
            batch_size=4,
            report=lambda **fields: None,
        )
    assert list_checkpoints(tmp_path / "ckpt") == []


def test_a_clean_fit_finishes(tmp_path: Path) -> None:
    """The check does not fire on a healthy run (so the two tests above fail for the NaN, not for the check)."""
    state = fit_run(
        tiny_model(),
        batches(nan_at=None, count=STEPS).repeat(),
        batches(nan_at=None, count=1),
        plan(tmp_path, epochs=2),
        state=FitState(),
        initial_epoch=0,
        batch_size=4,
        report=lambda **fields: None,
    )
    assert len(state.history["loss"]) == 2 and all(np.isfinite(state.history["val_loss"]))


def test_fit_detector_fails_on_a_nan_loss_too() -> None:
    """The demo's and the examples' fit (:func:`fit_detector`) has the same check."""
    config = TrainConfig(epochs=1, steps_per_epoch=STEPS, batch_size=4, learning_rate=0.5)
    with pytest.raises(TrainingDiverged, match=r"the loss became nan at epoch 1 step 2.*learning_rate 0\.5"):
        fit_detector(tiny_model(), DetectorConfig(classes=("a",)), config, batches(nan_at=1, count=STEPS).repeat())
