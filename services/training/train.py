"""The detector's training core: seeding, compiling and fitting, with progress in the log.

Thin on purpose: the fit itself is :func:`services.training.fitting.fit_run`, the one loop the training job
(checkpoints, resume, early stopping, TensorBoard, progress in ``job.meta``) runs too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from services.training.detector import DetectorConfig
from services.training.fitting import FitPlan, FitState, fit_run
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
    recalibration_steps: int = 50,
) -> FitState:
    """Compile (unless already compiled) and fit ``model`` on the endless ``train_data`` through the one fit loop
    (:func:`~services.training.fitting.fit_run`: no checkpoints, no early stopping), then recalibrate its batch-norm
    statistics over ``recalibration_steps`` batches (see :func:`recalibrate_batch_norm`).

    Returns:
        The fit's state: ``history`` holds per-epoch ``loss`` (and, with validation data, ``val_loss``).

    Raises:
        TrainingDiverged: the loss became NaN or infinite.
    """
    if not model.compiled:
        compile_detector(model, detector, train)
    log.info(
        "training %s: %d epochs x %d steps, batch %d, crops %d px, %d parameters",
        model.name,
        train.epochs,
        train.steps_per_epoch,
        train.batch_size,
        train.train_size,
        model.count_params(),
    )
    plan = FitPlan(train.epochs, train.steps_per_epoch, patience=0, checkpoints=None, tensorboard=None)
    state = fit_run(
        model,
        train_data,
        validation_data,
        plan,
        state=FitState(),
        initial_epoch=0,
        batch_size=train.batch_size,
        learning_rate=train.learning_rate,
    )
    recalibrate_batch_norm(model, train_data, recalibration_steps)
    return state
