"""Camera-like JPEGs, generated in code: what a phone or a CCTV camera uploads, at 1280x720 and 1920x1080.

A real photo is mostly smooth regions with edges and sensor noise, saved at quality ~90 with 4:2:0 chroma and an
EXIF block (make, model, time, orientation). So is this: a low-frequency random field (a few dozen control points,
bicubic upsampled), some filled shapes for edges, Gaussian noise of a few grey levels, then Pillow's encoder with
EXIF. The sizes in bytes land where camera files do (about 0.2-0.6 MB at 1080p), which decides the decode cost.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

CAMERA_SIZES: dict[str, tuple[int, int]] = {"photo-720p": (1280, 720), "photo-1080p": (1920, 1080)}
"""The camera-like input sets of the gateway-ceiling bench: name -> (width, height)."""


def camera_jpeg(width: int, height: int, seed: int, *, quality: int = 90) -> bytes:
    """A ``width x height`` photo-like JPEG with an EXIF block (orientation 1: stored upright)."""
    rng = np.random.default_rng(seed)
    # Smooth colour fields: a coarse grid of random colours, upsampled (what sky, walls and floors look like).
    coarse = rng.integers(30, 225, size=(max(2, height // 120), max(2, width // 120), 3), dtype=np.uint8)
    field = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(field)
    for _ in range(40):  # edges: objects of every size
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(width // 40, width // 5)), int(rng.integers(height // 40, height // 5))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x0, y0, x0 + w, y0 + h), fill=colour)
    pixels = np.asarray(field, dtype=np.int16) + rng.normal(0.0, 3.0, size=(height, width, 3)).astype(np.int16)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    exif = Image.Exif()
    exif[0x010F] = "Spotter"  # Make
    exif[0x0110] = "Bench Camera"  # Model
    exif[0x0112] = 1  # Orientation
    exif[0x0132] = "2026:11:21 12:00:00"  # DateTime
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, subsampling="4:2:0", exif=exif.tobytes())
    return out.getvalue()
