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


@dataclass(frozen=True, slots=True)
class DigitStyle:
    """How varied the digits are: each is drawn with a font height drawn from ``scale`` (a fraction of the canvas),
    a stroke of up to ``max_stroke`` px, a rotation within ``±rotation`` degrees, a blur of up to ``blur`` px and
    pixel noise of up to ``noise`` grey levels. The defaults are the MNIST-like digits of the classifier's
    measurement; :data:`HARD` is the active-learning experiment's harder set (small digits among large ones)."""

    scale: tuple[float, float] = (0.55, 0.85)
    max_stroke: int = 3
    rotation: float = 20.0
    blur: float = 1.5
    noise: float = 25.0


MNIST_LIKE = DigitStyle()
"""The default style."""
HARD = DigitStyle(scale=(0.25, 0.9), max_stroke=2, rotation=35.0, blur=1.8, noise=45.0)
"""Digits from a quarter of the canvas (7 px of 28) to nearly all of it, thin, tilted and noisy: classes a small
model confuses (1/7, 3/5/8, 6/9 at small sizes) and a pool whose images differ in how hard they are."""


def draw_digit(
    rng: np.random.Generator, label: str, *, size: int = SIZE, style: DigitStyle = MNIST_LIKE
) -> Image.Image:
    """One ``size`` x ``size`` grey image of ``label`` (light on dark, like MNIST), with random size, stroke,
    position, rotation, blur and noise (within ``style``)."""
    big = size * 3  # drawn large and shrunk: rotation and blur then look like a scanned digit, not jagged pixels
    font = ImageFont.load_default(size=max(4, int(rng.uniform(*style.scale) * big)))
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    stroke = int(rng.integers(0, style.max_stroke + 1))
    x0, y0, x1, y1 = draw.textbbox((0, 0), label, font=font, stroke_width=stroke)
    room_x, room_y = big - (x1 - x0), big - (y1 - y0)
    x = -x0 + room_x / 2 + rng.uniform(-0.3, 0.3) * max(room_x, 0)
    y = -y0 + room_y / 2 + rng.uniform(-0.3, 0.3) * max(room_y, 0)
    ink = int(rng.integers(170, 256))
    draw.text((x, y), label, fill=ink, font=font, stroke_width=stroke, stroke_fill=ink)
    canvas = canvas.rotate(float(rng.uniform(-style.rotation, style.rotation)), resample=Image.Resampling.BILINEAR)
    canvas = canvas.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.0, style.blur))))
    small = np.asarray(canvas.resize((size, size), Image.Resampling.BOX), dtype=np.float32)
    noisy = small + rng.normal(0.0, rng.uniform(0.0, style.noise), small.shape) + rng.uniform(0, 40)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), mode="L")


def generate_digits(
    seed: int,
    per_class: int,
    *,
    size: int = SIZE,
    style: DigitStyle = MNIST_LIKE,
    start: int = 0,
    only: str | None = None,
) -> Iterator[Digit]:
    """``per_class`` digits of each class (or of class ``only``), class by class; digit ``i`` of class ``c``
    depends only on ``(seed, c, i)`` (and ``style``), ``i`` counted from ``start``."""
    for c, label in enumerate(DIGITS):
        if only is not None and label != only:
            continue
        for i in range(start, start + per_class):
            yield Digit(label, draw_digit(np.random.default_rng([seed, c, i]), label, size=size, style=style))


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
