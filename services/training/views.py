"""How a detector will see its images, ``whole`` or ``tiles``, and the rule of a train job's ``views: auto``.

TensorFlow-free (the rule is plain arithmetic on sizes the dataset's records declare).

The rule for ``auto``: letterboxing an image to the canvas S shrinks it by ``S / max(w, h)``; an object whose side
(the square root of its area) falls under :data:`MIN_LETTERBOXED_PX` that way is too small for a whole-image model
to find (it spans under three cells of the stride-4 heat map; the demo's objects start at 14 px). When the median
object would shrink under that, and the images are larger than one view, the detector is trained on native-scale
crops and served tiled (``tiles``); otherwise it sees the whole image (``whole``). A median object that does not fit
in a crop also means ``whole``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from services.vision.tiling import Views

MIN_LETTERBOXED_PX = 12.0
"""The smallest median object side, in canvas pixels after the letterbox, for which ``auto`` keeps whole images."""


@dataclass(frozen=True, slots=True)
class SizeStats:
    """Sizes in a split (object side: the square root of its box's area, in original pixels; letterboxed: the same
    on the canvas S, where a whole-image model sees it)."""

    images: int
    median_image_side: float
    median_object_side: float
    median_letterboxed_side: float
    object_side_range: tuple[float, float] | None


def size_stats(images: Iterable[tuple[int, int, list[tuple[float, float]]]], input_size: int) -> SizeStats:
    """Statistics of ``(width, height, [(box width, box height), ...])`` per image, in pixels."""
    sides, image_sides, shrunk = [], [], []
    for width, height, boxes in images:
        longest = max(width, height, 1)
        image_sides.append(float(longest))
        scale = min(1.0, input_size / longest)
        for w, h in boxes:
            side = math.sqrt(max(w, 0.0) * max(h, 0.0))
            sides.append(side)
            shrunk.append(side * scale)
    return SizeStats(
        images=len(image_sides),
        median_image_side=statistics.median(image_sides) if image_sides else 0.0,
        median_object_side=statistics.median(sides) if sides else 0.0,
        median_letterboxed_side=statistics.median(shrunk) if shrunk else 0.0,
        object_side_range=(round(min(sides), 1), round(max(sides), 1)) if sides else None,
    )


def choose_views(stats: SizeStats, input_size: int, crop_size: int) -> tuple[Views, str]:
    """``views: auto``'s choice for a dataset and why, in a sentence for the job's log."""
    what = (
        f"median object side {stats.median_object_side:.1f} px in images of median longest side "
        f"{stats.median_image_side:.0f} px: {stats.median_letterboxed_side:.1f} px once letterboxed to {input_size}"
    )
    if not stats.object_side_range:
        return "whole", "the train split has no boxes: whole images"
    if stats.median_image_side <= input_size:
        return "whole", f"{what}; the images fit in one view: whole images"
    if stats.median_letterboxed_side >= MIN_LETTERBOXED_PX:
        return "whole", f"{what} (at least {MIN_LETTERBOXED_PX:g} px): whole images"
    if stats.median_object_side > crop_size:
        return "whole", f"{what}, but objects do not fit in a {crop_size} px crop: whole images"
    return "tiles", f"{what} (under {MIN_LETTERBOXED_PX:g} px): native-scale {crop_size} px crops, served tiled"
