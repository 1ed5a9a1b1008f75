"""Losses of the CenterNet-style detector: penalty-reduced focal loss on the heat-maps, L1 on size and offset.

``y_true`` is :func:`services.training.targets.encode_targets`'s layout (``K`` heat-maps, size, offset, mask) and
``y_pred`` the model's raw output (``K`` logits, size, offset). Each term is normalised by the number of objects in
the batch, as CenterNet does, so the loss does not depend on how crowded the images are.
"""

from __future__ import annotations

import keras
import tensorflow as tf

SIZE_WEIGHT = 0.1
OFFSET_WEIGHT = 1.0


def _split(y_true: tf.Tensor, y_pred: tf.Tensor, num_classes: int) -> tuple[tf.Tensor, ...]:
    y_true = tf.cast(y_true, tf.float32)
    y_pred = tf.cast(y_pred, tf.float32)
    heat, size, offset, mask = (
        y_true[..., :num_classes],
        y_true[..., num_classes : num_classes + 2],
        y_true[..., num_classes + 2 : num_classes + 4],
        y_true[..., num_classes + 4 : num_classes + 5],
    )
    logits = y_pred[..., :num_classes]
    return heat, size, offset, mask, logits, y_pred[..., num_classes : num_classes + 2], y_pred[..., num_classes + 2 :]


def heatmap_focal_loss(heat: tf.Tensor, logits: tf.Tensor, num_objects: tf.Tensor) -> tf.Tensor:
    """CenterNet's focal loss (alpha 2, beta 4), computed from logits for numerical stability."""
    prob = tf.sigmoid(logits)
    log_p = tf.math.log_sigmoid(logits)
    log_not_p = tf.math.log_sigmoid(-logits)
    positive = tf.cast(heat >= 1.0 - 1e-4, tf.float32)
    pos_loss = -positive * (1 - prob) ** 2 * log_p
    neg_loss = -(1 - positive) * (1 - heat) ** 4 * prob**2 * log_not_p
    return (tf.reduce_sum(pos_loss) + tf.reduce_sum(neg_loss)) / num_objects


class CenterNetLoss(keras.losses.Loss):  # type: ignore[misc]
    """The detector's total loss: focal heat-map loss + 0.1 x size L1 + 1 x offset L1 (CenterNet's weights)."""

    def __init__(self, num_classes: int, name: str = "centernet_loss", **kwargs: object) -> None:
        super().__init__(name=name, reduction="sum", **kwargs)
        self.num_classes = num_classes

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        terms = loss_terms(y_true, y_pred, self.num_classes)
        return terms["heatmap"] + SIZE_WEIGHT * terms["size"] + OFFSET_WEIGHT * terms["offset"]

    def get_config(self) -> dict[str, object]:
        return {**super().get_config(), "num_classes": self.num_classes}


def loss_terms(y_true: tf.Tensor, y_pred: tf.Tensor, num_classes: int) -> dict[str, tf.Tensor]:
    """The three terms apart (for logging and tests)."""
    heat, size, offset, mask, logits, pred_size, pred_offset = _split(y_true, y_pred, num_classes)
    num_objects = tf.maximum(tf.reduce_sum(mask), 1.0)
    return {
        "heatmap": heatmap_focal_loss(heat, logits, num_objects),
        "size": tf.reduce_sum(mask * tf.abs(pred_size - size)) / num_objects,
        "offset": tf.reduce_sum(mask * tf.abs(pred_offset - offset)) / num_objects,
    }
