"""Seeded synthetic digits: 28 x 28 grey images of ``0``-``9`` (an MNIST-sized stand-in, since nothing can be
downloaded here), for the small-grey-image classifier's tests and measurement.

Each digit is drawn with Pillow's own scalable font (``ImageFont.load_default(size)``) at a random size, stroke width,
position and rotation, then blurred a little and given pixel noise. Digit ``i`` of seed ``s`` is the same whatever
else is generated. Pure NumPy and Pillow (no TensorFlow).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

DIGITS: tuple[str, ...] = tuple(str(d) for d in range(10))
"""The classes, in label-map order (a folder-per-class import sorts them the same way)."""

SIZE = 28
"""The images' side in pixels."""


@dataclass(frozen=True, slots=True)
class Digit:
    """One generated digit: its class name and its 28 x 28 ``"L"`` image."""

    label: str
    image: Image.Image


def draw_digit(rng: np.random.Generator, label: str, *, size: int = SIZE) -> Image.Image:
    """One ``size`` x ``size`` grey image of ``label`` (light on dark, like MNIST), with random size, stroke,
    position, rotation, blur and noise."""
    big = size * 3  # drawn large and shrunk: rotation and blur then look like a scanned digit, not jagged pixels
    font = ImageFont.load_default(size=int(rng.uniform(0.55, 0.85) * big))
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    stroke = int(rng.integers(0, 4))
    x0, y0, x1, y1 = draw.textbbox((0, 0), label, font=font, stroke_width=stroke)
    room_x, room_y = big - (x1 - x0), big - (y1 - y0)
    x = -x0 + room_x / 2 + rng.uniform(-0.3, 0.3) * max(room_x, 0)
    y = -y0 + room_y / 2 + rng.uniform(-0.3, 0.3) * max(room_y, 0)
    ink = int(rng.integers(170, 256))
    draw.text((x, y), label, fill=ink, font=font, stroke_width=stroke, stroke_fill=ink)
    canvas = canvas.rotate(float(rng.uniform(-20, 20)), resample=Image.Resampling.BILINEAR)
    canvas = canvas.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.0, 1.5))))
    small = np.asarray(canvas.resize((size, size), Image.Resampling.BOX), dtype=np.float32)
    noisy = small + rng.normal(0.0, rng.uniform(0.0, 25.0), small.shape) + rng.uniform(0, 40)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), mode="L")


def generate_digits(seed: int, per_class: int, *, size: int = SIZE) -> Iterator[Digit]:
    """``per_class`` digits of each class, class by class; digit ``i`` of class ``c`` depends only on
    ``(seed, c, i)``."""
    for c, label in enumerate(DIGITS):
        for i in range(per_class):
            yield Digit(label, draw_digit(np.random.default_rng([seed, c, i]), label, size=size))


def write_digit_folders(folder: Path, seed: int, per_class: int, *, size: int = SIZE) -> list[Path]:
    """A folder-per-class dataset (``folder/<digit>/<n>.png``, mode ``"L"`` PNGs); the files written."""
    written: list[Path] = []
    counts: dict[str, int] = {}
    for digit in generate_digits(seed, per_class, size=size):
        n = counts[digit.label] = counts.get(digit.label, 0) + 1
        path = folder / digit.label / f"{digit.label}-{seed}-{n:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        digit.image.save(path, format="PNG")
        written.append(path)
    return written
