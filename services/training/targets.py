"""Ground truth encoded for the CenterNet-style head: the inverse of :mod:`services.training.postprocess`.

Layout (last axis) of the target tensor ``[H / stride, W / stride, K + 5]``:
``K`` class heat-maps (a Gaussian per object, exactly 1 at its centre cell), box width and height in output cells,
the centre's x and y offset inside its cell, and a mask that is 1 at object centre cells (where the box terms count).
"""

from __future__ import annotations

import tensorflow as tf

MIN_SIGMA = 0.4
"""Smallest Gaussian spread in output cells: a 14 px object at stride 4 still gets soft neighbours."""

SIGMA_PER_SIZE = 0.54 / 6
"""Gaussian spread as a fraction of the box side (TTFNet's choice): bigger objects tolerate bigger centre errors."""


def encode_targets(
    boxes: tf.Tensor, classes: tf.Tensor, *, height: int, width: int, stride: int, num_classes: int
) -> tf.Tensor:
    """Encode one image's objects.

    Args:
        boxes: float32 ``[M, 4]`` ``ymin, xmin, ymax, xmax`` normalised to the ``height`` x ``width`` input.
        classes: int ``[M]`` label-map ids from 1; rows with id 0 are padding and are ignored.
        height: Input height in pixels (a multiple of ``stride``).
        width: Input width in pixels.
        stride: Output stride of the head.
        num_classes: K.

    Returns:
        float32 ``[height / stride, width / stride, K + 5]`` (see the module docstring).
    """
    out_h, out_w = height // stride, width // stride
    classes = tf.cast(classes, tf.int32)
    keep = classes > 0
    boxes = tf.boolean_mask(tf.cast(boxes, tf.float32), keep)
    classes = tf.boolean_mask(classes, keep) - 1
    # Box geometry in output cells.
    scale = tf.constant([out_h, out_w, out_h, out_w], tf.float32)
    cells = boxes * scale
    box_h = cells[:, 2] - cells[:, 0]
    box_w = cells[:, 3] - cells[:, 1]
    cy = (cells[:, 0] + cells[:, 2]) / 2
    cx = (cells[:, 1] + cells[:, 3]) / 2
    iy = tf.clip_by_value(tf.cast(tf.floor(cy), tf.int32), 0, out_h - 1)
    ix = tf.clip_by_value(tf.cast(tf.floor(cx), tf.int32), 0, out_w - 1)
    # One Gaussian per object centred on its integer cell (so the centre cell is exactly 1), then the per-class max.
    sigma_y = tf.maximum(box_h * SIGMA_PER_SIZE, MIN_SIGMA)
    sigma_x = tf.maximum(box_w * SIGMA_PER_SIZE, MIN_SIGMA)
    ys = tf.range(out_h, dtype=tf.float32)
    xs = tf.range(out_w, dtype=tf.float32)
    dy = (ys[None, :] - tf.cast(iy, tf.float32)[:, None]) ** 2 / (2 * sigma_y[:, None] ** 2)  # [M, H]
    dx = (xs[None, :] - tf.cast(ix, tf.float32)[:, None]) ** 2 / (2 * sigma_x[:, None] ** 2)  # [M, W]
    gauss = tf.exp(-(dy[:, :, None] + dx[:, None, :]))  # [M, H, W]
    onehot = tf.one_hot(classes, num_classes, dtype=tf.float32)  # [M, K]
    # reduce_max over no objects is the lowest float, hence the floor at 0.
    heat = tf.maximum(tf.reduce_max(gauss[:, :, :, None] * onehot[:, None, None, :], axis=0), 0.0)
    heat = tf.ensure_shape(heat, [out_h, out_w, num_classes])
    # Box terms at the centre cells (two centres in one cell, rare at stride 4, get their average).
    index = tf.stack([iy, ix], axis=1)
    values = tf.stack(
        [box_w, box_h, cx - tf.cast(ix, tf.float32), cy - tf.cast(iy, tf.float32), tf.ones_like(cx)], axis=1
    )
    regress = tf.scatter_nd(index, values, [out_h, out_w, 5])
    # scatter_nd adds duplicates: divide by the count, and keep the mask 0/1.
    count = tf.maximum(regress[:, :, 4:5], 1.0)
    regress = tf.concat([regress[:, :, :4] / count, tf.minimum(regress[:, :, 4:5], 1.0)], axis=-1)
    return tf.concat([heat, regress], axis=-1)
