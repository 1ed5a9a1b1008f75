"""The images every row of the bench uses: the demo model's examples, as files (served rows) and as letterboxed
canvases (the ceiling and the model-server rows), so that every row feeds the model the same pixels.

TensorFlow-free: the ceiling process (TensorFlow) and the load generator (our TFS stubs) both build their canvases
here, with the gateway's own decoding and letterboxing (``services.vision``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.vision.images import DecodedImage, decode_image
from services.vision.letterbox import letterbox
from services.vision.tiling import ModelViews, Views, plan_views

REPO = Path(__file__).resolve().parent.parent
DEMO_MODEL = REPO / "models" / "demo"
DEMO_EXAMPLES = DEMO_MODEL / "examples"
_MEDIA_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}


@dataclass(frozen=True)
class Example:
    """One image file: its name, bytes and content type."""

    name: str
    data: bytes
    content_type: str


def latest_version(model_dir: Path) -> Path:
    """The highest integer version folder of a model (``models/demo`` -> ``models/demo/1``)."""
    versions = [p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    if not versions:
        raise FileNotFoundError(f"no version folder under {model_dir}")
    return max(versions, key=lambda p: int(p.name))


def model_views(version_dir: Path) -> Views:
    """How a version sees an image, from its ``assets.extra/spotter.json`` as the gateway reads it (``whole``
    without one)."""
    path = version_dir / "assets.extra" / "spotter.json"
    if not path.is_file():
        return ModelViews().views
    return ModelViews.from_metadata(json.loads(path.read_text())).views


def load_examples(folder: Path, input_size: int, views: Views | None = None) -> list[Example]:
    """The image files of ``folder`` that the gateway serves as a single view (no tiling under ``tile=auto``) to a
    model whose ``views`` are these (:func:`model_views`; ``None``: the gateway's rule for a model it knows nothing
    of).

    One view per request keeps "images/s" the same number for every row: a tiled poster would be many model images
    (and so would any image larger than the input for a ``tiles`` model such as the demo).

    Raises:
        FileNotFoundError: no such image in ``folder``.
    """
    found: list[Example] = []
    for path in sorted(folder.iterdir()):
        content_type = _MEDIA_TYPES.get(path.suffix.lower())
        if content_type is None:
            continue
        data = path.read_bytes()
        decoded = _decode(data, content_type)
        if len(plan_views(decoded.width, decoded.height, input_size, "auto", views=views)) == 1:
            found.append(Example(path.name, data, content_type))
    if not found:
        raise FileNotFoundError(f"no single-view image in {folder}")
    return found


def canvases(examples: list[Example], input_size: int) -> np.ndarray:
    """The examples decoded and letterboxed as the gateway does it: uint8 ``[n, S, S, 3]``."""
    return np.stack([letterbox(_decode(e.data, e.content_type), input_size)[0] for e in examples])


def _decode(data: bytes, content_type: str) -> DecodedImage:
    # The bench's own example files: no limits to enforce beyond the gateway's defaults' order of magnitude.
    return decode_image(data, content_type=content_type, max_bytes=len(data), max_pixels=100_000_000)


def batch_of(images: np.ndarray, size: int, start: int = 0) -> np.ndarray:
    """``size`` images cycling through ``images`` from index ``start`` (contiguous, ready to send)."""
    index = (start + np.arange(size)) % len(images)
    return np.ascontiguousarray(images[index])
