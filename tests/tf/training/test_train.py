"""A few training steps lower the loss on a tiny set; the losses behave."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from services.training.detector import DetectorConfig, build_detector
from services.training.inputs import scene_arrays, synthetic_dataset
from services.training.losses import CenterNetLoss, loss_terms
from services.training.targets import encode_targets
from services.training.train import TrainConfig, fit_detector, recalibrate_batch_norm, seed_everything


def test_a_few_steps_lower_the_loss() -> None:
    seed_everything(4)
    arrays = scene_arrays(11, 8, width=96, height=96, object_size=(14, 24))
    config = DetectorConfig(classes=("circle", "square", "triangle", "cross"), input_size=96)
    train = TrainConfig(
        epochs=5, steps_per_epoch=5, batch_size=8, train_size=96, learning_rate=3e-3, warmup_steps=5, seed=4
    )
    data = synthetic_dataset(arrays, batch_size=8, stride=4, num_classes=4)  # the same 8 scenes every step
    model = build_detector(config)
    history = fit_detector(model, config, train, data.repeat())
    losses = history.history["loss"]
    assert losses[-1] < 0.7 * losses[0]


def test_loss_is_small_for_a_perfect_prediction_and_large_for_a_blank_one() -> None:
    boxes = tf.constant([[0.2, 0.2, 0.4, 0.45]])
    targets = encode_targets(boxes, tf.constant([2]), height=64, width=64, stride=4, num_classes=3)[None]
    heat = np.clip(targets.numpy()[..., :3], 1e-6, 1 - 1e-6)
    perfect = np.concatenate([np.log(heat / (1 - heat)) * 3, targets.numpy()[..., 3:7]], axis=-1)
    blank = np.zeros_like(perfect)
    loss = CenterNetLoss(3)
    assert float(loss(targets, perfect)) < 0.1
    assert float(loss(targets, blank)) > 1.0
    terms = loss_terms(targets, perfect, 3)
    assert float(terms["size"]) < 1e-6 and float(terms["offset"]) < 1e-6


def test_recalibrated_batch_norm_makes_inference_match_training_mode() -> None:
    seed_everything(5)
    arrays = scene_arrays(12, 8, width=96, height=96, object_size=(14, 24))
    config = DetectorConfig(classes=("circle", "square", "triangle", "cross"), input_size=96)
    train = TrainConfig(epochs=1, steps_per_epoch=10, batch_size=8, train_size=96, warmup_steps=2, seed=5)
    data = synthetic_dataset(arrays, batch_size=8, stride=4, num_classes=4).repeat()
    model = build_detector(config)
    fit_detector(model, config, train, data, recalibration_steps=0)
    images = next(iter(data))[0]
    reference = np.asarray(model(images, training=True))
    # 10 steps at momentum 0.99: the moving statistics are still mostly their initial values.
    lagging = np.abs(np.asarray(model(images, training=False)) - reference).mean()
    recalibrate_batch_norm(model, data, steps=1)
    fixed = np.abs(np.asarray(model(images, training=False)) - reference).mean()
    assert fixed < 1e-3 < lagging
