from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
from PIL import Image

from services.errors import NotAcceptable
from services.vision.boxes import Box, Detection
from services.vision.draw import PALETTE, class_colour, draw_detections, encode_image, negotiate_media_type

GREY = (128, 128, 128)


def changed(before: Image.Image, after: Image.Image) -> np.ndarray:
    return (np.asarray(before) != np.asarray(after)).any(axis=2)


@pytest.mark.parametrize("size", [(160, 120), (1920, 1080), (4000, 300)])
def test_drawing_keeps_the_size_and_marks_the_box_edges(size: tuple[int, int]) -> None:
    width, height = size
    image = Image.new("RGB", size, GREY)
    box = Box(width * 0.3, height * 0.4, width * 0.7, height * 0.9)
    drawn = draw_detections(image, [Detection("road", 1, 0.93, box)])
    assert drawn.size == size and drawn.mode == "RGB"
    assert (np.asarray(image) == GREY).all()  # the input is left alone
    pixels = np.asarray(drawn)
    colour = class_colour(1)
    x0, y0, x1, y1 = (round(v) for v in box.as_tuple())
    mid_x, mid_y = (x0 + x1) // 2, (y0 + y1) // 2
    for x, y in [(x0, mid_y), (x1 - 1, mid_y), (mid_x, y1 - 1)]:  # left, right, bottom edges
        assert tuple(pixels[y, x]) == colour
    assert tuple(pixels[mid_y, mid_x]) == GREY  # the inside stays visible
    assert tuple(pixels[y0 - 1, x0 + 1]) == colour  # the label's background sits just above the box


def test_labels_grow_with_the_image_and_stay_inside_it() -> None:
    heights = []
    for side in (200, 2000):
        image = Image.new("RGB", (side, side), GREY)
        # A box in the top-right corner: the label has no room above and would run past the right edge.
        box = Box(side * 0.9, 0, side, side * 0.1)
        drawn = draw_detections(image, [Detection("a-long-label-name", 3, 0.5, box)])
        marked = changed(image, drawn)
        rows = np.flatnonzero(marked[:, : int(side * 0.9)].any(axis=1))  # the label's part left of the box
        assert rows.size, "the label was pushed inside the image, left of the box"
        heights.append(rows.max() - rows.min() + 1)
    assert heights[1] > 5 * heights[0]


def test_label_text_contrasts_with_its_background() -> None:
    image = Image.new("RGB", (400, 400), GREY)
    for class_id in range(1, len(PALETTE) + 1):
        drawn = np.asarray(draw_detections(image, [Detection("x", class_id, 0.5, Box(100, 100, 300, 300))]))
        label = drawn[80:100, 100:140].reshape(-1, 3)  # the label area above the box
        colour = np.array(class_colour(class_id))
        text = label[np.abs(label.astype(int) - colour).sum(axis=1) > 150]
        assert text.size, f"no contrasting text pixels for class {class_id}"


def test_each_class_has_its_own_clearly_distinct_colour() -> None:
    assert len(set(PALETTE)) == len(PALETTE)
    closest = min(np.abs(np.subtract(a, b)).sum() for a, b in itertools.combinations(PALETTE, 2))
    assert closest >= 70
    assert class_colour(1) != class_colour(2)
    assert class_colour(1) == class_colour(1 + len(PALETTE))


def test_drawing_nothing_and_odd_inputs() -> None:
    image = Image.new("L", (50, 40), 7)
    assert draw_detections(image, []).mode == "RGB"
    # Boxes outside the image, inverted or tiny are drawn clamped, never raise.
    odd = [
        Detection("a", 1, 0.1, Box(-20, -20, 500, 500)),
        Detection("b", 2, 0.2, Box(45, 35, 46, 36)),
        Detection("c", 3, 0.3, Box(30, 30, 10, 10)),
    ]
    assert draw_detections(image, odd).size == (50, 40)


@pytest.mark.parametrize("media_type", ["image/jpeg", "image/png"])
def test_encode_decode_round_trip(media_type: str) -> None:
    ys, xs = np.mgrid[0:48, 0:64]
    pixels = np.stack([xs * 4, ys * 5, (xs + ys) * 2], axis=-1).astype(np.uint8)  # smooth, as photos are
    pixels[10:30, 20:40] = (200, 30, 30)
    data = encode_image(Image.fromarray(pixels), media_type)
    decoded = Image.open(io.BytesIO(data))
    assert decoded.format == {"image/jpeg": "JPEG", "image/png": "PNG"}[media_type]
    assert decoded.size == (64, 48)
    error = np.abs(np.asarray(decoded.convert("RGB"), dtype=int) - pixels).mean()
    assert error == 0 if media_type == "image/png" else error < 3


def test_encode_refuses_other_types_and_converts_modes() -> None:
    with pytest.raises(NotAcceptable):
        encode_image(Image.new("RGB", (4, 4)), "image/gif")
    assert encode_image(Image.new("RGBA", (4, 4)), "image/jpeg")[:3] == b"\xff\xd8\xff"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "image/jpeg"),
        ("", "image/jpeg"),
        ("*/*", "image/jpeg"),
        ("image/*", "image/jpeg"),
        ("image/png", "image/png"),
        ("image/jpeg", "image/jpeg"),
        ("text/html, image/png;q=0.8, */*;q=0.1", "image/png"),
        ("image/png;q=0.5, image/jpeg;q=0.9", "image/jpeg"),
        ("image/jpeg;q=0.4, image/png;q=0.6", "image/png"),
        ("image/*;q=0.2, image/png", "image/png"),
        ("image/jpeg;q=0, */*", "image/png"),
        ("IMAGE/PNG", "image/png"),
        ("image/webp, image/png;q=0.1", "image/png"),
        ("image/png;q=bad, image/jpeg;q=0.3", "image/jpeg"),  # a malformed range is ignored
        ("image/jpg", "image/jpeg"),
    ],
)
def test_negotiate_media_type(accept: str | None, expected: str) -> None:
    assert negotiate_media_type(accept) == expected


def test_negotiate_default_and_refusal() -> None:
    assert negotiate_media_type("*/*", default="image/png") == "image/png"
    assert negotiate_media_type("image/jpeg, image/png", default="image/png") == "image/png"
    for accept in ["image/webp", "application/json", "image/png;q=0, image/jpeg;q=0", "image/*;q=0"]:
        with pytest.raises(NotAcceptable) as caught:
            negotiate_media_type(accept)
        assert "image/jpeg" in caught.value.message and "image/png" in caught.value.message
