"""In-graph post-processing of the CenterNet-style head: heat-map peaks to a fixed number of detections.

Peaks are cells that equal the 3x3 max-pool of their class heat-map (CenterNet's trick in place of NMS); the top N
over all cells and classes become detections. Rows past ``num_detections`` (scores under ``score_floor``) are zeros.
"""

from __future__ import annotations

import tensorflow as tf

DEFAULT_SCORE_FLOOR = 0.05
"""Scores below this are padding: clutter-level peaks are not worth a row (clients filter higher, e.g. 0.5)."""


def decode_detections(
    raw: tf.Tensor,
    *,
    num_classes: int,
    stride: int,
    max_detections: int,
    score_floor: float = DEFAULT_SCORE_FLOOR,
    calibration: tuple[float, float] = (1.0, 0.0),
) -> dict[str, tf.Tensor]:
    """Decode the head's raw output.

    Args:
        raw: float ``[batch, h, w, K + 4]``: heat-map logits, box size (cells), centre offset (cells).
        num_classes: K.
        stride: Output stride (input pixels per cell).
        max_detections: N.
        score_floor: Detections scoring below it are dropped (zero rows past ``num_detections``).
        calibration: ``(slope, intercept)``: a peak of logit ``z`` scores ``sigmoid(slope * z + intercept)`` (see
            :mod:`services.training.calibration`); ``(1, 0)`` is the raw heat-map probability.

    Returns:
        ``detection_boxes`` float32 ``[batch, N, 4]`` ``ymin, xmin, ymax, xmax`` normalised to the input (clipped to
        0..1), ``detection_scores`` ``[batch, N]`` (descending), ``detection_classes`` ``[batch, N]`` (label-map
        ids from 1, as floats), ``num_detections`` ``[batch]`` float32.
    """
    raw = tf.cast(raw, tf.float32)
    shape = tf.shape(raw)
    batch, out_h, out_w = shape[0], shape[1], shape[2]
    # Peaks and ranking on logits: the sigmoid is monotone, and logits keep their precision near 1.
    logits = raw[..., :num_classes]
    regress = raw[..., num_classes : num_classes + 4]
    peaks = tf.nn.max_pool2d(logits, ksize=3, strides=1, padding="SAME")
    logits = tf.where(tf.equal(logits, peaks), logits, tf.fill(tf.shape(logits), -1e9))
    flat = tf.reshape(logits, [batch, -1])
    # top_k needs k <= the number of candidates; tiny inputs may have fewer cells than N.
    k = tf.minimum(max_detections, tf.shape(flat)[1])
    top, index = tf.math.top_k(flat, k=k, sorted=True)
    slope, intercept = calibration
    scores = tf.sigmoid(slope * top + intercept)
    cell = index // num_classes
    cls = index % num_classes
    ys = tf.cast(cell // out_w, tf.float32)
    xs = tf.cast(cell % out_w, tf.float32)
    box = tf.gather(tf.reshape(regress, [batch, -1, 4]), cell, batch_dims=1)  # [batch, k, 4]
    size_w, size_h = tf.maximum(box[..., 0], 0.0), tf.maximum(box[..., 1], 0.0)
    cx, cy = xs + box[..., 2], ys + box[..., 3]
    fh, fw = tf.cast(out_h, tf.float32), tf.cast(out_w, tf.float32)
    boxes = tf.stack(
        [(cy - size_h / 2) / fh, (cx - size_w / 2) / fw, (cy + size_h / 2) / fh, (cx + size_w / 2) / fw], axis=-1
    )
    boxes = tf.clip_by_value(boxes, 0.0, 1.0)
    valid = scores >= score_floor
    scores = tf.where(valid, scores, 0.0)
    boxes = tf.where(valid[..., None], boxes, 0.0)
    classes = tf.where(valid, tf.cast(cls + 1, tf.float32), 0.0)
    pad = max_detections - k
    n = max_detections
    # ensure_shape: N is static in the exported signature even though k is computed.
    return {
        "detection_boxes": tf.ensure_shape(tf.pad(boxes, [[0, 0], [0, pad], [0, 0]]), [None, n, 4]),
        "detection_scores": tf.ensure_shape(tf.pad(scores, [[0, 0], [0, pad]]), [None, n]),
        "detection_classes": tf.ensure_shape(tf.pad(classes, [[0, 0], [0, pad]]), [None, n]),
        "num_detections": tf.reduce_sum(tf.cast(valid, tf.float32), axis=1),
    }
