"""The letterbox convention of docs/architecture.md, in TensorFlow (the gateway's is in :mod:`services.vision`).

``scale = min(S / w, S / h)``; the image is resized (bilinear) to ``(round(w * scale), round(h * scale))`` and pasted
at the top-left of an ``S x S`` canvas of zeros. The training pipeline and the exported ``detect_encoded`` signature
both use this function, so what the model sees is the same whichever way an image arrives.
"""

from __future__ import annotations

import tensorflow as tf


def letterbox(image: tf.Tensor, size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Letterbox one image.

    Args:
        image: uint8 ``[h, w, 3]``.
        size: S.

    Returns:
        The uint8 ``[S, S, 3]`` canvas and the float32 ``scale``.
    """
    shape = tf.shape(image)
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    scale = tf.minimum(size / w, size / h)
    # Python's round() and tf.round() both round half to even, like the gateway's letterbox.
    new_h = tf.clip_by_value(tf.cast(tf.round(h * scale), tf.int32), 1, size)
    new_w = tf.clip_by_value(tf.cast(tf.round(w * scale), tf.int32), 1, size)
    # antialias makes downscaling average like Pillow's bilinear filter does (plain bilinear would alias).
    resized = tf.image.resize(image, tf.stack([new_h, new_w]), method="bilinear", antialias=True)
    resized = tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)
    canvas = tf.pad(resized, [[0, size - new_h], [0, size - new_w], [0, 0]])
    return tf.ensure_shape(canvas, [size, size, 3]), scale


def boxes_to_canvas(boxes: tf.Tensor, height: tf.Tensor, width: tf.Tensor, scale: tf.Tensor, size: int) -> tf.Tensor:
    """Boxes ``[..., 4]`` ``ymin, xmin, ymax, xmax`` normalised to an ``height x width`` image, normalised to its
    ``size`` canvas instead."""
    fy = tf.cast(height, tf.float32) * scale / size
    fx = tf.cast(width, tf.float32) * scale / size
    return tf.cast(boxes, tf.float32) * tf.stack([fy, fx, fy, fx], axis=-1)


def boxes_from_canvas(boxes: tf.Tensor, height: tf.Tensor, width: tf.Tensor, scale: tf.Tensor, size: int) -> tf.Tensor:
    """The inverse of :func:`boxes_to_canvas`, clipped to the image (``x = xn * S / scale``, over the width)."""
    fy = size / (tf.cast(height, tf.float32) * scale)
    fx = size / (tf.cast(width, tf.float32) * scale)
    return tf.clip_by_value(tf.cast(boxes, tf.float32) * tf.stack([fy, fx, fy, fx], axis=-1), 0.0, 1.0)
