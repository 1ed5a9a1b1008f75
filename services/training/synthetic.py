"""Seeded synthetic scenes: a few classes of small objects among clutter, with exact ground truth.

The demo model, the tests and the benchmarks are built on these, because nothing can be downloaded here. Scenes are
reproducible: scene ``i`` of seed ``s`` is the same whatever else is generated. Pure NumPy and Pillow (no TensorFlow),
so TensorFlow-free processes can use it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from services.vision.boxes import Box, iou

CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
"""The object classes, in label-map order (class id = index + 1)."""

# A base colour per class; each object varies it a little, and clutter never uses these hues at full saturation.
_CLASS_RGB: dict[str, tuple[int, int, int]] = {
    "circle": (220, 40, 40),
    "square": (40, 90, 225),
    "triangle": (30, 175, 60),
    "cross": (235, 195, 20),
}


@dataclass(frozen=True, slots=True)
class SceneObject:
    """One object in a scene: its class name, label-map id (from 1) and tight box in pixels."""

    label: str
    class_id: int
    box: Box


@dataclass(slots=True)
class Scene:
    """A generated RGB image and the objects in it."""

    image: Image.Image
    objects: list[SceneObject] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        """The distinct class names present, in label-map order (an image-level label set)."""
        present = {o.label for o in self.objects}
        return [c for c in CLASSES if c in present]


def class_id(label: str) -> int:
    """The label-map id (from 1) of a class name."""
    return CLASSES.index(label) + 1


def generate_scene(
    rng: np.random.Generator,
    *,
    width: int = 320,
    height: int = 320,
    objects: tuple[int, int] = (1, 6),
    object_size: tuple[int, int] = (14, 40),
    classes: Sequence[str] = CLASSES,
    clutter: int = 14,
) -> Scene:
    """One scene of ``width`` x ``height`` with between ``objects[0]`` and ``objects[1]`` objects (inclusive) of the
    given classes, ``object_size`` pixels across, placed without overlapping, among ``clutter`` distractors."""
    image = _background(rng, width, height)
    draw = ImageDraw.Draw(image)
    for _ in range(clutter):
        _draw_clutter(draw, rng, width, height, object_size)
    placed: list[SceneObject] = []
    wanted = int(rng.integers(objects[0], objects[1] + 1))
    for _ in range(wanted * 20):
        if len(placed) == wanted:
            break
        size = int(rng.integers(object_size[0], object_size[1] + 1))
        if size >= min(width, height):
            break
        x0 = float(rng.integers(0, width - size))
        y0 = float(rng.integers(0, height - size))
        box = Box(x0, y0, x0 + size, y0 + size)
        if any(iou(box, o.box) > 0 or _touches(box, o.box) for o in placed):
            continue
        label = str(rng.choice(list(classes)))
        tight = _draw_object(draw, rng, label, box)
        placed.append(SceneObject(label, class_id(label), tight))
    image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.0, 0.6))))
    noisy = np.asarray(image, dtype=np.int16) + rng.normal(0, 4, (height, width, 3)).astype(np.int16)
    return Scene(Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)), placed)


def generate_scenes(seed: int, count: int, *, start: int = 0, **kwargs: object) -> Iterator[Scene]:
    """Scenes ``start`` .. ``start + count - 1`` of ``seed``; each has its own generator, so they never shift."""
    for index in range(start, start + count):
        yield generate_scene(np.random.default_rng([seed, index]), **kwargs)  # type: ignore[arg-type]


def _touches(a: Box, b: Box, margin: float = 2.0) -> bool:
    return not (
        a.xmax + margin < b.xmin or b.xmax + margin < a.xmin or a.ymax + margin < b.ymin or b.ymax + margin < a.ymin
    )


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A smooth two-colour gradient with low-frequency blotches: texture without objects."""
    c0 = rng.integers(60, 200, 3)
    c1 = rng.integers(60, 200, 3)
    angle = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (xs * math.cos(angle) + ys * math.sin(angle)) / max(width, height)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    base = c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]
    coarse = rng.normal(0, 14, (max(height // 40, 2), max(width // 40, 2), 3))
    blotches = np.asarray(
        Image.fromarray(np.clip(coarse + 128, 0, 255).astype(np.uint8)).resize(
            (width, height), Image.Resampling.BILINEAR
        ),
        dtype=np.float32,
    )
    return Image.fromarray(np.clip(base + blotches - 128, 0, 255).astype(np.uint8))


def _muted_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """A greyish colour: clutter must not look like a class by colour alone."""
    grey = int(rng.integers(30, 230))
    tint = rng.integers(-35, 36, 3)
    r, g, b = (int(np.clip(grey + t, 0, 255)) for t in tint)
    return (r, g, b)


def _draw_clutter(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, height: int, object_size: tuple[int, int]
) -> None:
    kind = int(rng.integers(0, 4))
    size = float(rng.uniform(object_size[0] * 0.5, object_size[1] * 1.8))
    x, y = float(rng.uniform(0, width)), float(rng.uniform(0, height))
    if kind == 0:  # a line
        angle = rng.uniform(0, math.pi)
        dx, dy = math.cos(angle) * size * 1.5, math.sin(angle) * size * 1.5
        draw.line([(x - dx, y - dy), (x + dx, y + dy)], fill=_muted_colour(rng), width=int(rng.integers(1, 4)))
    elif kind == 1:  # a greyish blob
        draw.ellipse([x, y, x + size, y + size * rng.uniform(0.4, 1.0)], fill=_muted_colour(rng))
    elif kind == 2:  # an outline ring in a class hue: same colour as an object, wrong shape
        colour = _CLASS_RGB[str(rng.choice(list(CLASSES)))]
        draw.ellipse([x, y, x + size, y + size], outline=colour, width=2)
    else:  # a random polygon
        points = [
            (x + size * math.cos(a), y + size * math.sin(a)) for a in sorted(rng.uniform(0, 2 * math.pi, 5).tolist())
        ]
        draw.polygon(points, fill=_muted_colour(rng))


def _jitter(rng: np.random.Generator, rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    scale = rng.uniform(0.75, 1.1)
    r, g, b = (int(np.clip(c * scale + rng.integers(-15, 16), 0, 255)) for c in rgb)
    return (r, g, b)


def _draw_object(draw: ImageDraw.ImageDraw, rng: np.random.Generator, label: str, box: Box) -> Box:
    """Draw ``label`` filling ``box``; return the tight box of what was drawn."""
    colour = _jitter(rng, _CLASS_RGB[label])
    outline = tuple(int(c * 0.5) for c in colour)
    x0, y0, x1, y1 = box.as_tuple()
    if label == "circle":
        draw.ellipse([x0, y0, x1 - 1, y1 - 1], fill=colour, outline=outline)
    elif label == "square":
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=colour, outline=outline)
    elif label == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1 - 1, y1 - 1), (x0, y1 - 1)], fill=colour, outline=outline)
    else:
        arm = (x1 - x0) / 3
        draw.rectangle([x0 + arm, y0, x1 - arm - 1, y1 - 1], fill=colour)
        draw.rectangle([x0, y0 + arm, x1 - 1, y1 - arm - 1], fill=colour)
    return box


POSTER: dict[str, object] = {
    "width": 2000,
    "height": 1300,
    "objects": (3, 6),
    "object_size": (20, 45),
    "clutter": 420,
}
"""A poster: about 2000x1300 pixels of dense clutter (the demo scenes' density) with 3-6 small targets of 20-45 px:
letterboxed whole to 320 px, a target is 3-7 px across; a 320 px tile sees it at its own size."""


def generate_posters(seed: int, count: int, *, start: int = 0, **overrides: object) -> Iterator[Scene]:
    """Posters (:data:`POSTER`, with ``overrides``) ``start`` .. ``start + count - 1`` of ``seed``."""
    yield from generate_scenes(seed, count, start=start, **{**POSTER, **overrides})
