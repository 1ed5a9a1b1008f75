"""The detector's training core: seeding, compiling and fitting, with progress in the log.

Thin on purpose: the training job (checkpoints, resume, early stopping, TensorBoard, progress in ``job.meta``) adds
Keras callbacks around :func:`fit_detector` rather than a second training loop.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from services.errors import TrainingDiverged
from services.training.detector import DetectorConfig
from services.training.losses import CenterNetLoss

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """How to train.

    Attributes:
        epochs: Passes of ``steps_per_epoch`` batches (training pipelines are endless).
        steps_per_epoch: Batches per epoch.
        batch_size: Examples per batch.
        train_size: Side of the training crops (the model is fully convolutional: crops smaller than the serving
            canvas train several times faster and see the same objects at the same scale).
        learning_rate: Peak learning rate of AdamW (after warm-up, then cosine decay to 1 % of it).
        warmup_steps: Linear warm-up steps.
        weight_decay: AdamW's decoupled weight decay.
        seed: Seeds Python, NumPy, TensorFlow and Keras, and the data pipeline's augmentation.
    """

    epochs: int = 10
    steps_per_epoch: int = 200
    batch_size: int = 16
    train_size: int = 192
    learning_rate: float = 2e-3
    warmup_steps: int = 200
    weight_decay: float = 1e-4
    seed: int = 0

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


def seed_everything(seed: int, *, deterministic_ops: bool = True) -> None:
    """Seed Python's ``random``, NumPy, TensorFlow and Keras; with ``deterministic_ops``, ask TensorFlow for
    deterministic kernels too (on CPU the remaining source of difference is float summation order in threads)."""
    keras.utils.set_random_seed(seed)
    if deterministic_ops:
        tf.config.experimental.enable_op_determinism()


def compile_detector(model: keras.Model, detector: DetectorConfig, train: TrainConfig) -> None:
    """Attach AdamW with warm-up and cosine decay, and the CenterNet loss."""
    decay_steps = max(train.total_steps - train.warmup_steps, 1)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=train.learning_rate * 0.01,
        decay_steps=decay_steps,
        alpha=0.01,
        warmup_target=train.learning_rate,
        warmup_steps=train.warmup_steps,
    )
    optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=train.weight_decay, clipnorm=10.0)
    model.compile(optimizer=optimizer, loss=CenterNetLoss(detector.num_classes))


class StopOnNonFiniteLoss(keras.callbacks.Callback):  # type: ignore[misc]
    """Fails the fit at the first step whose loss (or, at an epoch's end, validation loss) is NaN or infinite.

    Like ``keras.callbacks.TerminateOnNaN``, but it raises :class:`~services.errors.TrainingDiverged` instead of
    quietly stopping: a stopped fit would look finished and keep (and export) weights that are NaN. The error is
    raised before the epoch's checkpoint is written, so the run keeps only weights from before the divergence.
    """

    def __init__(self, learning_rate: float | None = None) -> None:
        super().__init__()
        self.learning_rate = learning_rate
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._check((logs or {}).get("loss"), f"epoch {self.epoch + 1} step {batch + 1}", "loss")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._check((logs or {}).get("val_loss"), f"epoch {epoch + 1}", "validation loss")

    def _check(self, value: Any, where: str, what: str) -> None:
        if value is None or math.isfinite(float(value)):
            return
        rate = f" (learning_rate {self.learning_rate:g})" if self.learning_rate is not None else ""
        self.model.stop_training = True
        raise TrainingDiverged(
            f"training diverged: the {what} became {float(value)} at {where}; lower the learning rate{rate}, and "
            "check the dataset's boxes",
            details={"where": where, "metric": what},
        )


class ProgressLog(keras.callbacks.Callback):  # type: ignore[misc]
    """Logs the loss and throughput every ``every`` steps and at each epoch's end (fit runs with ``verbose=0``)."""

    def __init__(self, batch_size: int, steps_per_epoch: int, every: int = 50) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.steps_per_epoch = steps_per_epoch
        self.every = every
        self.started = time.monotonic()
        self.epoch = 0
        self.images_per_second = 0.0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.started = time.monotonic()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch
        self.epoch_started = time.monotonic()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if (batch + 1) % self.every == 0:
            rate = (batch + 1) * self.batch_size / (time.monotonic() - self.epoch_started)
            log.info(
                "epoch %d step %d/%d loss %.4f (%.1f images/s)",
                self.epoch + 1,
                batch + 1,
                self.steps_per_epoch,
                (logs or {}).get("loss", float("nan")),
                rate,
            )

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        took = time.monotonic() - self.epoch_started
        self.images_per_second = self.steps_per_epoch * self.batch_size / took
        metrics = " ".join(f"{k} {v:.4f}" for k, v in sorted((logs or {}).items()) if isinstance(v, float))
        log.info("epoch %d done in %.0f s (%.1f images/s): %s", epoch + 1, took, self.images_per_second, metrics)


def batch_norm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """Every batch-norm layer of ``model``, nested models included."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(batch_norm_layers(layer))
    return found


def recalibrate_batch_norm(model: keras.Model, data: tf.data.Dataset, steps: int) -> None:
    """Replace every batch-norm layer's moving statistics by their exact average over ``steps`` batches, computed
    with the final weights.

    Moving averages lag: they still carry their initial values (mean 0, variance 1) and statistics of weights long
    gone. After a short training from scratch the lag is large (we measured moving variances 8x the real ones), and
    inference-mode outputs collapse; averaging the batch statistics of the final model fixes it, for a few forward
    passes ("precise BN").
    """
    layers_ = batch_norm_layers(model)
    if not layers_ or steps < 1:
        return
    saved = [layer.momentum for layer in layers_]
    for layer in layers_:
        layer.momentum = 0.0  # a training-mode call now stores its batch statistics as-is
    sums = [(np.zeros(layer.moving_mean.shape), np.zeros(layer.moving_variance.shape)) for layer in layers_]

    def forward_fn(images: tf.Tensor) -> None:
        model(images, training=True)

    forward = tf.function(forward_fn)

    count = 0
    try:
        for images, _ in data.take(steps):
            forward(images)
            for (mean, var), layer in zip(sums, layers_, strict=True):
                mean += np.asarray(layer.moving_mean)
                var += np.asarray(layer.moving_variance)
            count += 1
    finally:
        for layer, momentum in zip(layers_, saved, strict=True):
            layer.momentum = momentum
    if count:
        for (mean, var), layer in zip(sums, layers_, strict=True):
            layer.moving_mean.assign(mean / count)
            layer.moving_variance.assign(var / count)
    log.info("batch-norm statistics recalibrated over %d batches", count)


def fit_detector(
    model: keras.Model,
    detector: DetectorConfig,
    train: TrainConfig,
    train_data: tf.data.Dataset,
    *,
    validation_data: tf.data.Dataset | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    initial_epoch: int = 0,
    recalibration_steps: int = 50,
) -> keras.callbacks.History:
    """Compile (unless already compiled) and fit ``model`` on the endless ``train_data``, then recalibrate its
    batch-norm statistics over ``recalibration_steps`` batches (see :func:`recalibrate_batch_norm`).

    Returns:
        Keras's history (per-epoch ``loss`` and, with validation data, ``val_loss``).
    """
    if not model.compiled:
        compile_detector(model, detector, train)
    progress = ProgressLog(train.batch_size, train.steps_per_epoch)
    log.info(
        "training %s: %d epochs x %d steps, batch %d, crops %d px, %d parameters",
        model.name,
        train.epochs,
        train.steps_per_epoch,
        train.batch_size,
        train.train_size,
        model.count_params(),
    )
    history = model.fit(
        train_data,
        epochs=train.epochs,
        steps_per_epoch=train.steps_per_epoch,
        validation_data=validation_data,
        callbacks=[StopOnNonFiniteLoss(train.learning_rate), progress, *callbacks],
        initial_epoch=initial_epoch,
        verbose=0,
    )
    recalibrate_batch_norm(model, train_data, recalibration_steps)
    return history
