"""Draw detections on an image, encode the result, and choose the answer's type from an ``Accept`` header.

Drawing is legible at any size: the line width and the font size grow with the image, each label ("road 0.93") sits
on a filled background in its class colour with black or white text (whichever contrasts), and labels are kept
inside the image. Each class id has its own colour from a fixed palette of clearly distinct colours, so a class looks
the same on every image. The font is Pillow's built-in scalable one (``ImageFont.load_default(size=...)``), so
nothing depends on fonts installed on the machine.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from services.errors import NotAcceptable
from services.vision.boxes import Detection

ENCODABLE_MEDIA_TYPES = ("image/jpeg", "image/png")
"""What :func:`encode_image` writes and :func:`negotiate_media_type` offers."""

# Seventeen saturated colours, told apart at a glance (the first ones best); no greys, which vanish on grey photos.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (255, 225, 25),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (0, 128, 128),
    (170, 110, 40),
    (128, 0, 0),
    (250, 190, 212),
    (0, 0, 128),
    (170, 255, 195),
    (128, 128, 0),
    (220, 190, 255),
)


def class_colour(class_id: int) -> tuple[int, int, int]:
    """The drawing colour of a label-map id (ids from 1 take the palette in order, then wrap around)."""
    return PALETTE[(class_id - 1) % len(PALETTE)]


def draw_detections(image: Image.Image, detections: Sequence[Detection]) -> Image.Image:
    """A copy of ``image`` (as RGB) with each detection's box and ``"label 0.93"`` drawn on it.

    Higher scores are drawn last, so they end up on top; labels are drawn after every box so no box crosses a label.
    """
    canvas = image.convert("RGB") if image.mode != "RGB" else image.copy()
    if not detections:
        return canvas
    width, height = canvas.size
    line = max(1, round(max(width, height) / 320))
    font = _font(max(12, round(min(width, height) * 0.03)))
    pad = max(1, round(font.size * 0.2))
    draw = ImageDraw.Draw(canvas)
    ordered = sorted(detections, key=lambda d: d.score)
    for d in ordered:
        x0, y0, x1, y1 = _clamped(d, width, height)
        draw.rectangle((x0, y0, x1, y1), outline=class_colour(d.class_id), width=line)
    for d in ordered:
        x0, y0, _, _ = _clamped(d, width, height)
        text = f"{d.label} {d.score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font, anchor="lt")
        label_w, label_h = right - left + 2 * pad, bottom - top + 2 * pad
        # Above the box when there is room, else just inside its top edge; never past the image's edges.
        lx = min(max(0, x0), max(0, width - label_w))
        ly = y0 - label_h if y0 - label_h >= 0 else y0
        ly = min(max(0, ly), max(0, height - label_h))
        colour = class_colour(d.class_id)
        draw.rectangle((lx, ly, lx + label_w - 1, ly + label_h - 1), fill=colour)
        draw.text((lx + pad - left, ly + pad - top), text, fill=_text_colour(colour), font=font, anchor="lt")
    return canvas


def encode_image(image: Image.Image, media_type: str, *, quality: int = 90) -> bytes:
    """``image`` encoded as ``image/jpeg`` (at ``quality``) or ``image/png``.

    Raises:
        NotAcceptable: Any other media type.
    """
    buffer = io.BytesIO()
    if media_type == "image/jpeg":
        rgb = image.convert("RGB") if image.mode != "RGB" else image
        rgb.save(buffer, format="JPEG", quality=quality)
    elif media_type == "image/png":
        # Level 1, not Pillow's 6: on photos (noisy, hardly compressible) it is within 15% of the size in well under
        # the time, and this is on the request path. Large PNG answers stay costly; JPEG is the default for that.
        image.save(buffer, format="PNG", compress_level=1)
    else:
        raise NotAcceptable(
            f"cannot encode {media_type!r}; one of {', '.join(ENCODABLE_MEDIA_TYPES)}",
            details={"available": list(ENCODABLE_MEDIA_TYPES)},
        )
    return buffer.getvalue()


def negotiate_media_type(accept: str | None, *, default: str = "image/jpeg") -> str:
    """The media type to answer an ``Accept`` header with: ``image/jpeg`` or ``image/png``.

    Media ranges are weighed by their ``q`` values (RFC 9110): the most specific range that matches an offer sets
    its weight, weight 0 refuses it, and the heaviest offer wins. Ties (``*/*``, ``image/*``) and a missing or
    empty header give ``default``. Malformed ranges are ignored.

    Raises:
        NotAcceptable: The header accepts neither type.
    """
    if default not in ENCODABLE_MEDIA_TYPES:
        raise ValueError(f"default must be one of {ENCODABLE_MEDIA_TYPES}, not {default!r}")
    ranges = _parse_accept(accept or "")
    if not ranges:
        return default
    offers = (default, *(t for t in ENCODABLE_MEDIA_TYPES if t != default))
    best, best_q = None, 0.0
    for offer in offers:
        q = _quality(offer, ranges)
        if q > best_q:
            best, best_q = offer, q
    if best is None:
        raise NotAcceptable(
            f"cannot answer with any type the Accept header allows ({accept!r}); "
            f"available: {', '.join(ENCODABLE_MEDIA_TYPES)}",
            details={"accept": accept, "available": list(ENCODABLE_MEDIA_TYPES)},
        )
    return best


def _parse_accept(accept: str) -> list[tuple[str, str, float]]:
    """``(type, subtype, q)`` for each well-formed media range of an ``Accept`` header."""
    ranges = []
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        media, params = fields[0].lower(), fields[1:]
        kind, slash, sub = media.partition("/")
        if not slash or not kind or not sub or (kind == "*" and sub != "*"):
            continue
        q = 1.0
        try:
            for param in params:
                name, _, value = param.partition("=")
                if name.strip().lower() == "q":
                    q = float(value.strip())
        except ValueError:
            continue
        if not 0.0 <= q <= 1.0:
            continue
        if (kind, sub) == ("image", "jpg"):
            sub = "jpeg"  # a common misspelling
        ranges.append((kind, sub, q))
    return ranges


def _quality(offer: str, ranges: list[tuple[str, str, float]]) -> float:
    """The weight of ``offer``: from the most specific matching range (exact, then ``type/*``, then ``*/*``)."""
    kind, sub = offer.split("/")
    best_specificity, q = -1, 0.0
    for r_kind, r_sub, r_q in ranges:
        if (r_kind, r_sub) == (kind, sub):
            specificity = 2
        elif (r_kind, r_sub) == (kind, "*"):
            specificity = 1
        elif (r_kind, r_sub) == ("*", "*"):
            specificity = 0
        else:
            continue
        if specificity > best_specificity or (specificity == best_specificity and r_q > q):
            best_specificity, q = specificity, r_q
    return q


def _font(size: int) -> ImageFont.FreeTypeFont:
    # Loaded per drawing, not cached: it takes 0.05 ms, and a FreeType face must not be shared between the threads
    # that draw concurrently.
    font = ImageFont.load_default(size=size)
    if not isinstance(font, ImageFont.FreeTypeFont):  # Pillow built without FreeType: labels would be tiny
        raise RuntimeError("Pillow has no FreeType support; install a Pillow wheel (they include it)")
    return font


def _clamped(d: Detection, width: int, height: int) -> tuple[int, int, int, int]:
    """The detection's box in whole pixels, inside the image, never inverted."""
    x0 = min(max(0, round(d.box.xmin)), width - 1)
    y0 = min(max(0, round(d.box.ymin)), height - 1)
    x1 = min(max(x0, round(d.box.xmax) - 1), width - 1)
    y1 = min(max(y0, round(d.box.ymax) - 1), height - 1)
    return x0, y0, x1, y1


def _text_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)
