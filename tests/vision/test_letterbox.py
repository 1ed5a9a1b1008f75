from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from services.vision.letterbox import Letterbox, letterbox
from tests.vision.support import patched


def red_extent(canvas: np.ndarray) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` of the canvas pixels that are clearly red."""
    red = (canvas[..., 0].astype(int) - canvas[..., 1]) > 100
    ys, xs = np.nonzero(red)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@pytest.mark.parametrize(("width", "height"), [(640, 320), (200, 700), (320, 320), (50, 30), (1921, 1081)])
def test_canvas_follows_the_convention(width: int, height: int) -> None:
    image = Image.new("RGB", (width, height), (40, 80, 120))
    canvas, placed = letterbox(image, 320)
    assert canvas.shape == (320, 320, 3) and canvas.dtype == np.uint8 and canvas.flags.c_contiguous
    scale = min(320 / width, 320 / height)
    assert placed == Letterbox(size=320, scale=scale, width=width, height=height)
    rw, rh = round(width * scale), round(height * scale)
    assert placed.resized_size == (rw, rh)
    assert (canvas[:rh, :rw] == (40, 80, 120)).all()  # the image, at the top-left
    assert not canvas[rh:].any() and not canvas[:, rw:].any()  # zeros elsewhere


def test_an_image_of_the_canvas_size_is_copied_unchanged() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    canvas, placed = letterbox(Image.fromarray(pixels), 64)
    assert placed.scale == 1.0
    assert (canvas == pixels).all()


@pytest.mark.parametrize(
    ("width", "height", "region"),
    [(900, 300, None), (300, 900, None), (1200, 800, (300, 200, 620, 520)), (1200, 800, (880, 480, 1200, 800))],
    ids=["wide", "tall", "tile", "corner-tile"],
)
def test_boxes_round_trip_through_the_canvas(width: int, height: int, region: tuple[int, int, int, int] | None) -> None:
    x0, y0, x1, y1 = region or (0, 0, width, height)
    rng = np.random.default_rng(3)
    a = rng.uniform([x0, y0], [x1, y1], (50, 2))
    b = rng.uniform([x0, y0], [x1, y1], (50, 2))
    boxes = np.concatenate([np.minimum(a, b), np.maximum(a, b)], axis=1)
    _, placed = letterbox(Image.new("RGB", (width, height)), 160, region=region)
    normalised = placed.to_normalized(boxes)
    assert ((normalised >= 0) & (normalised <= 1)).all()
    assert np.abs(placed.to_pixels(normalised) - boxes).max() < 1.0


@pytest.mark.parametrize(
    ("width", "height", "patch", "region"),
    [
        (900, 300, (450, 120, 600, 240), None),
        (300, 900, (30, 600, 210, 810), None),
        (1200, 800, (400, 300, 500, 420), (300, 200, 620, 520)),
    ],
)
def test_pixels_land_where_the_boxes_say(
    width: int, height: int, patch: tuple[int, int, int, int], region: tuple[int, int, int, int] | None
) -> None:
    canvas, placed = letterbox(patched(width, height, patch), 160, region=region)
    cx0, cy0, cx1, cy1 = red_extent(canvas)
    found = placed.to_pixels(np.array([[cy0 / 160, cx0 / 160, cy1 / 160, cx1 / 160]]))[0]
    one_canvas_pixel = 1 / placed.scale
    assert np.abs(found - np.array(patch)).max() <= one_canvas_pixel + 1


def test_a_region_is_the_same_as_cropping_first() -> None:
    rng = np.random.default_rng(5)
    image = Image.fromarray(rng.integers(0, 255, (400, 600, 3), dtype=np.uint8))
    region = (100, 50, 420, 370)
    canvas, placed = letterbox(image, 160, region=region)
    expected, _ = letterbox(image.crop(region), 160)
    assert (placed.offset_x, placed.offset_y, placed.width, placed.height) == (100.0, 50.0, 320, 320)
    assert np.abs(canvas.astype(int) - expected).mean() < 1.0


def test_to_pixels_clips_to_the_region_and_adds_its_offset() -> None:
    placed = Letterbox(size=100, scale=0.5, width=200, height=100, offset_x=1000.0, offset_y=500.0)
    # The resized region spans 100 x 50 canvas pixels; this box runs into the padding below and past the left.
    boxes = placed.to_pixels(np.array([[0.2, -0.1, 0.9, 0.5]]))
    assert boxes.tolist() == [[1000.0, 540.0, 1100.0, 600.0]]
    assert placed.to_pixels(np.zeros((0, 4))).shape == (0, 4)


def test_non_rgb_images_are_converted_and_bad_regions_refused() -> None:
    canvas, _ = letterbox(Image.new("L", (10, 10), 9), 10)
    assert (canvas == 9).all()
    image = Image.new("RGB", (10, 10))
    for region in [(0, 0, 0, 5), (5, 5, 4, 9), (0, 0, 11, 10), (-1, 0, 5, 5)]:
        with pytest.raises(ValueError, match="region"):
            letterbox(image, 10, region=region)
    with pytest.raises(ValueError, match="size"):
        letterbox(image, 0)
