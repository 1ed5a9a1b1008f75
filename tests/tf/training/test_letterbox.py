"""The in-graph letterbox follows the contract, and agrees with the gateway's (services.vision)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from services.training.letterbox import boxes_from_canvas, boxes_to_canvas, letterbox
from services.vision.letterbox import letterbox as letterbox_pil


@pytest.mark.parametrize(("h", "w"), [(60, 200), (300, 90), (64, 64), (33, 35)])
def test_letterbox_is_top_left_with_the_contract_size(h: int, w: int) -> None:
    image = np.random.default_rng(0).integers(1, 256, (h, w, 3), dtype=np.uint8)
    canvas, scale = letterbox(tf.constant(image), 64)
    canvas = canvas.numpy()
    s = min(64 / w, 64 / h)
    assert float(scale) == pytest.approx(s)
    new_w, new_h = round(w * s), round(h * s)
    assert canvas.shape == (64, 64, 3)
    assert not canvas[new_h:].any() and not canvas[:, new_w:].any()
    assert canvas[:new_h, :new_w].mean() > 50


def test_agrees_with_the_gateway_letterbox() -> None:
    rng = np.random.default_rng(1)
    # A smooth image: resampling filters differ a little at sharp edges, not on smooth content.
    small = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(small).resize((400, 240), Image.Resampling.BICUBIC))
    ours = letterbox(tf.constant(image), 160)[0].numpy().astype(np.float32)
    theirs, placed = letterbox_pil(Image.fromarray(image), 160)
    assert placed.resized_size == (160, 96)
    assert np.abs(ours - theirs.astype(np.float32)).mean() < 2.0


def test_boxes_map_to_the_canvas_and_back() -> None:
    boxes = tf.constant([[0.1, 0.2, 0.5, 0.9]])
    h, w = tf.constant(150), tf.constant(400)
    _, scale = letterbox(tf.zeros([150, 400, 3], tf.uint8), 320)
    on_canvas = boxes_to_canvas(boxes, h, w, scale, 320)
    # 400 wide -> scale 0.8: y spans 150 * 0.8 = 120 of 320 canvas pixels.
    np.testing.assert_allclose(on_canvas.numpy()[0], [0.1 * 120 / 320, 0.2, 0.5 * 120 / 320, 0.9], atol=1e-6)
    np.testing.assert_allclose(boxes_from_canvas(on_canvas, h, w, scale, 320).numpy(), boxes.numpy(), atol=1e-6)
