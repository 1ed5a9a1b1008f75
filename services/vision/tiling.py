"""Tiling: cut large images into overlapping model-sized views so that small objects keep their pixels.

Letterboxing a 2800x1760 poster into a 320x320 input shrinks it nine times, and a 30-pixel Wally becomes three
pixels. Tiles of the model's own input size see objects at their native size instead. The recipe for a caller:

1. ``wants_tiling(w, h, S, mode, views=...)`` decides: ``on`` always, ``off`` never, and ``auto`` follows how the
   model sees an image (its ``views``, recorded at export in ``assets.extra/spotter.json``): a ``whole`` model (the
   TF OD API's way, and the default for foreign models) is never tiled, a ``tiles`` model is tiled whenever the image
   is larger than one view (``max(w, h) > S``). Without ``views``, ``auto`` tiles when the whole-image letterbox
   would shrink the image by more than ``auto_factor``;
2. ``plan_views(w, h, S, mode, views=...)`` gives the views to run: the tiles of :func:`plan_tiles` **plus the
   whole image**, so that an object larger than a tile, or cut by every tile border, is still seen whole;
3. letterbox each view (``letterbox(image, S, region=view.region)``), run them through the model (they batch with any
   other request's images), map each view's boxes to original pixels with its own
   :class:`~services.vision.letterbox.Letterbox`;
4. merge everything with :func:`services.vision.nms.merge_detections`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

from services.errors import InvalidParameter

TileMode = Literal["auto", "on", "off"]
TILE_MODES: tuple[str, ...] = get_args(TileMode)
Views = Literal["whole", "tiles"]
"""How a model sees an image: the whole image letterboxed to S, or native-scale S x S views (tiles)."""
VIEWS: tuple[str, ...] = get_args(Views)

DEFAULT_OVERLAP = 0.25
"""Fraction of a tile shared with its neighbour (the gateway's ``tile_overlap`` default; evaluation uses it too)."""
DEFAULT_MAX_TILES = 32
"""Most tiles per image (the gateway's ``max_tiles`` default)."""
DEFAULT_MERGE_IOU = 0.5
"""IoU above which merged same-class boxes of several views are duplicates (the gateway's ``tile_nms_iou``)."""


@dataclass(frozen=True, slots=True)
class ModelViews:
    """How a model version sees an image, as its export recorded it (``assets.extra/spotter.json``).

    Attributes:
        views: ``"whole"`` or ``"tiles"``.
        crop_size: The side of the native-scale crops it was trained on (tiles; ``None`` when unknown).
        object_size_px: ``(smallest, largest)`` object side in the training crops, in pixels (``None`` when unknown).
    """

    views: Views = "whole"
    crop_size: int | None = None
    object_size_px: tuple[float, float] | None = None

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> ModelViews:
        """Read from a version's ``spotter.json`` contents; a foreign model (no or an unknown ``views``) is
        ``whole``, the TF OD API's way."""
        views = metadata.get("views")
        if views not in VIEWS:
            return cls()
        crop = metadata.get("crop_size")
        size = metadata.get("object_size_px")
        return cls(
            views,
            int(crop) if isinstance(crop, int | float) else None,
            (float(size[0]), float(size[1])) if isinstance(size, list | tuple) and len(size) == 2 else None,
        )

    def to_metadata(self) -> dict[str, Any]:
        """The ``spotter.json`` keys."""
        return {
            "views": self.views,
            "crop_size": self.crop_size,
            "object_size_px": list(self.object_size_px) if self.object_size_px else None,
        }


@dataclass(frozen=True)
class Tile:
    """A rectangle of the original image, in pixels: top-left ``(x, y)``, size ``width`` x ``height``."""

    x: int
    y: int
    width: int
    height: int

    @property
    def region(self) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)``, the form :func:`services.vision.letterbox.letterbox` takes."""
        return (self.x, self.y, self.x + self.width, self.y + self.height)


def wants_tiling(
    width: int,
    height: int,
    input_size: int,
    mode: TileMode,
    *,
    auto_factor: float = 2.0,
    views: Views | None = None,
) -> bool:
    """Whether to tile a ``width`` x ``height`` image for a model of input ``input_size``.

    ``"on"`` always tiles, ``"off"`` never; ``"auto"`` follows the model's ``views``: never for ``"whole"``,
    whenever the image is larger than one view (``max(width, height) > input_size``) for ``"tiles"``. With no
    ``views`` known, ``"auto"`` tiles when letterboxing the whole image would shrink it by more than ``auto_factor``
    (``max(width, height) / input_size > auto_factor``).

    Raises:
        InvalidParameter: ``mode`` is not one of ``auto``, ``on``, ``off``.
    """
    if mode == "on":
        return True
    if mode == "off":
        return False
    if mode == "auto":
        if views == "whole":
            return False
        if views == "tiles":
            return max(width, height) > input_size
        return max(width, height) / input_size > auto_factor
    raise InvalidParameter(f"tile must be one of {', '.join(TILE_MODES)}, not {mode!r}", details={"tile": mode})


def plan_tiles(width: int, height: int, tile_size: int, *, overlap: float = 0.25, max_tiles: int = 64) -> list[Tile]:
    """Overlapping tiles covering every pixel of a ``width`` x ``height`` image, row by row.

    Tiles are ``tile_size`` square (the model's input size, so objects keep their native size), evenly spread along
    each axis with at least ``overlap`` of a tile shared between neighbours, the first flush with the top-left
    edges and the last with the bottom-right ones. Along an axis shorter than a tile, tiles span that axis. When more
    than ``max_tiles`` would be needed, the tile size grows until they fit (such tiles are then letterboxed down a
    little). An image no larger than a tile is one tile.

    Raises:
        ValueError: Non-positive sizes, ``overlap`` outside ``[0, 1)`` or ``max_tiles < 1``.
    """
    if width < 1 or height < 1 or tile_size < 1:
        raise ValueError(f"sizes must be positive: image {width}x{height}, tile {tile_size}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), not {overlap}")
    if max_tiles < 1:
        raise ValueError(f"max_tiles must be at least 1, not {max_tiles}")
    size = tile_size
    if _count(width, size, overlap) * _count(height, size, overlap) > max_tiles:
        # The count only falls as tiles grow, and one tile of the longer side always fits: bisect the smallest size.
        low, high = tile_size, max(width, height)
        while low < high:
            middle = (low + high) // 2
            if _count(width, middle, overlap) * _count(height, middle, overlap) <= max_tiles:
                high = middle
            else:
                low = middle + 1
        size = low
    xs = _starts(width, size, overlap)
    ys = _starts(height, size, overlap)
    tile_w, tile_h = min(size, width), min(size, height)
    return [Tile(x, y, tile_w, tile_h) for y in ys for x in xs]


def plan_views(
    width: int,
    height: int,
    input_size: int,
    mode: TileMode,
    *,
    auto_factor: float = 2.0,
    overlap: float = DEFAULT_OVERLAP,
    max_tiles: int = 64,
    views: Views | None = None,
) -> list[Tile]:
    """The views to run for one image: the whole image alone, or (when tiling) the tiles and then the whole image.

    The whole image rides along with the tiles so that objects larger than a tile, or cut by tile borders, are
    still found whole; :func:`services.vision.nms.merge_detections` then merges the views. An image that fits in one
    tile is just the whole image. ``views`` is the model's (see :func:`wants_tiling`).
    """
    whole = Tile(0, 0, width, height)
    if not wants_tiling(width, height, input_size, mode, auto_factor=auto_factor, views=views):
        return [whole]
    tiles = plan_tiles(width, height, input_size, overlap=overlap, max_tiles=max_tiles)
    if len(tiles) == 1 and tiles[0] == whole:
        return [whole]
    return [*tiles, whole]


def _count(length: int, size: int, overlap: float) -> int:
    """How many tiles of ``size`` cover ``length`` with at least ``overlap`` shared between neighbours."""
    if length <= size:
        return 1
    stride = max(1.0, size * (1.0 - overlap))
    return math.ceil((length - size) / stride) + 1


def _starts(length: int, size: int, overlap: float) -> list[int]:
    """Evenly spread start positions: the first 0, the last ``length - size``."""
    n = _count(length, size, overlap)
    if n == 1:
        return [0]
    span = length - size
    return [round(i * span / (n - 1)) for i in range(n)]
