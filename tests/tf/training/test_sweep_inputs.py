"""What a sweep feeds the exports it measures: real images, decoded and letterboxed to each row's size as the gateway
does, a batch taking them in turn."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from services.training.sweep_inputs import image_canvases
from services.vision.images import DecodedImage, decode_image
from services.vision.letterbox import letterbox


def _decoded(width: int, height: int, grey: int) -> DecodedImage:
    buffer = io.BytesIO()
    Image.new("L", (width, height), grey).save(buffer, format="PNG")
    return decode_image(buffer.getvalue(), content_type=None, max_bytes=1 << 20, max_pixels=1 << 20)


def test_a_batch_is_the_images_in_turn_letterboxed_to_the_rows_size() -> None:
    images = [_decoded(28, 28, 200), _decoded(40, 20, 90)]
    canvases = image_canvases(images)
    batch = canvases(3, 64)
    assert batch.shape == (3, 64, 64, 3) and batch.dtype == np.uint8
    assert np.array_equal(batch[0], letterbox(images[0], 64)[0]) and np.array_equal(batch[2], batch[0])
    assert np.array_equal(batch[1], letterbox(images[1], 64)[0])
    assert batch[1, 40:].max() == 0 and batch[1, :32].min() == 90  # the wide image, on top of a zero canvas
    assert canvases(1, 96).shape == (1, 96, 96, 3)
