"""Target encoding and decoding round-trip: encode ground truth, decode it with the export's post-processing."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from services.training.postprocess import decode_detections
from services.training.targets import encode_targets


def _as_logits(targets: np.ndarray, num_classes: int) -> np.ndarray:
    """The raw output a perfect model would give: heat-map logits (clipped), then size and offset."""
    heat = np.clip(targets[..., :num_classes], 1e-4, 1 - 1e-4)
    return np.concatenate([np.log(heat / (1 - heat)), targets[..., num_classes : num_classes + 4]], axis=-1)


def test_encode_then_decode_gives_the_same_boxes() -> None:
    size, stride, k = 128, 4, 3
    boxes = np.array(
        [[0.10, 0.20, 0.25, 0.31], [0.50, 0.55, 0.62, 0.70], [0.80, 0.05, 0.97, 0.19], [0, 0, 0, 0]], np.float32
    )
    classes = np.array([1, 3, 2, 0], np.int32)
    targets = encode_targets(
        tf.constant(boxes), tf.constant(classes), height=size, width=size, stride=stride, num_classes=k
    ).numpy()
    assert targets.shape == (size // stride, size // stride, k + 5)
    assert targets[..., k + 4].sum() == 3  # one centre cell per real object; the padding row is ignored
    assert targets[..., :k].max() == 1.0
    out = decode_detections(tf.constant(_as_logits(targets, k)[None]), num_classes=k, stride=stride, max_detections=10)
    n = int(out["num_detections"][0])
    assert n == 3
    classes_out = out["detection_classes"][0, :n].numpy().tolist()
    got = sorted(zip(classes_out, out["detection_boxes"][0, :n].numpy().tolist(), strict=True))
    want = sorted(zip([1.0, 3.0, 2.0], boxes[:3].tolist(), strict=True))
    for (gc, gb), (wc, wb) in zip(got, want, strict=True):
        assert gc == wc
        np.testing.assert_allclose(gb, wb, atol=1e-5)
    # Padding rows are zeros.
    assert not out["detection_scores"][0, n:].numpy().any()
    assert not out["detection_boxes"][0, n:].numpy().any()


def test_no_objects_encode_to_empty_targets() -> None:
    targets = encode_targets(tf.zeros([5, 4]), tf.zeros([5], tf.int32), height=64, width=96, stride=4, num_classes=2)
    assert targets.shape == (16, 24, 7)
    assert not targets.numpy().any()


def test_decoder_pads_to_max_detections_on_tiny_maps() -> None:
    raw = tf.zeros([2, 2, 2, 1 + 4])
    out = decode_detections(raw, num_classes=1, stride=4, max_detections=100, score_floor=0.0)
    assert out["detection_boxes"].shape == (2, 100, 4)
    assert out["detection_scores"].shape == (2, 100)
    assert out["num_detections"].numpy().tolist() == [4.0, 4.0]
