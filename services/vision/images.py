"""Decode and validate uploaded images: the one place where untrusted bytes become pixels.

:func:`decode_image` checks the cheap things first and decodes last, so that a hostile upload costs next to nothing:

1. an empty body is :class:`~services.errors.InvalidInput`;
2. a declared content type we do not take (``text/plain``, ``image/gif``...) is
   :class:`~services.errors.UnsupportedMediaType`; ``application/octet-stream`` or none means "look at the bytes";
3. more than ``max_bytes`` is :class:`~services.errors.PayloadTooLarge`;
4. the real format is sniffed from the magic bytes: another image format is ``UnsupportedMediaType``, anything else
   ``InvalidInput``. The content decides, not the declared type (a PNG sent as ``image/jpeg`` is decoded as a PNG);
5. Pillow reads the header only (``Image.open`` is lazy), and ``width * height > max_pixels`` is ``PayloadTooLarge``
   before a single pixel is decoded, so a decompression bomb (a tiny PNG declaring 60000 x 60000) costs no memory;
6. the header must not claim more than the bytes can hold (:func:`check_data_covers`): a JPEG needs at least one bit
   per 8 x 8 block, a PNG at least its raw pixel bytes / 1032 (deflate's best ratio), a JPEG at most
   :data:`MAX_JPEG_SCANS` scans. A 633-byte JPEG whose header says 7000 x 7000 is ``InvalidInput`` here, before
   anything is allocated: libjpeg would otherwise "decode" it, filling 49 M pixels it does not have, and never say
   so. Within these bounds a file of ``n`` bytes can make at most ``512 n`` JPEG pixels, so the cost of a request
   follows the bytes it sent, up to the pixel budget;
7. then the pixels are decoded; a truncated or corrupt image is ``InvalidInput``. Pillow's
   ``ImageFile.LOAD_TRUNCATED_IMAGES`` must stay off (it is by default; a test keeps it so): with it, Pillow would
   pad a truncated file with grey instead of raising.

The result is RGB with its EXIF orientation applied, so ``width`` x ``height`` are the pixels a user sees and the
pixels every box is reported in. Other modes are converted: palette, grey, CMYK; alpha is dropped (as TensorFlow's
``decode_image(channels=3)`` does, so served pixels match what training saw); 16-bit grey is scaled to 8 bits by its
high byte (as ``tf.image.convert_image_dtype`` does). Animated images give their first frame.

Pillow's own decompression-bomb guard still runs inside ``Image.open``: over twice ``Image.MAX_IMAGE_PIXELS`` it
raises (mapped to ``PayloadTooLarge`` here), and between one and two times it warns before our own limit refuses the
image. Keep ``max_pixels`` below ``Image.MAX_IMAGE_PIXELS`` (about 89 M) and the warning never fires.

**Reduced decoding.** ``decode_image(..., target_size=S)`` lets JPEG's DCT scaling (Pillow's ``Image.draft``) decode
at 1/2, 1/4 or 1/8 of the size when the image will be letterboxed down to ``S`` anyway: never smaller than the
letterbox needs, and two to three times faster for large photos. ``width``/``height`` stay the original size and
:attr:`DecodedImage.source_box` says where the original lies in the smaller ``image``; pass the
:class:`DecodedImage` itself (not ``.image``) to :func:`services.vision.letterbox.letterbox` and boxes come out in
original pixels. Do not ask for it when the image will be tiled or drawn on (``:annotate``): those need every pixel.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, ImageOps

from services.errors import InvalidInput, PayloadTooLarge, SpotterError, UnsupportedMediaType

logger = logging.getLogger(__name__)

ACCEPTED_MEDIA_TYPES = ("image/jpeg", "image/png", "image/webp")
"""The media types :func:`decode_image` takes, declared or sniffed."""

_PILLOW_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
# Names clients use for the accepted types besides the registered ones.
_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png"}
# Declared types that say nothing about the content: sniff instead.
_UNDECLARED = ("", "application/octet-stream", "binary/octet-stream")
_ACCEPTED_TEXT = "image/jpeg, image/png or image/webp"

# Magic numbers of the image formats we recognise, as (offset, bytes, media type). Only the first three are decoded;
# the others are recognised so that a GIF or a TIFF is told "unsupported type" (415) rather than "not an image" (400).
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"BM", "image/bmp"),
    (0, b"II*\x00", "image/tiff"),
    (0, b"MM\x00*", "image/tiff"),
    (0, b"\x00\x00\x01\x00", "image/vnd.microsoft.icon"),
    (0, b"8BPS", "image/vnd.adobe.photoshop"),
    (0, b"\xff\x0a", "image/jxl"),
    (0, b"\x00\x00\x00\x0cJXL \r\n\x87\n", "image/jxl"),
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n", "image/jp2"),
    (0, b"qoif", "image/qoi"),
)
# ISO base media file brands (bytes 8..12 after "ftyp" at 4..8) of HEIF-family stills.
_FTYP_BRANDS = {
    b"avif": "image/avif",
    b"avis": "image/avif",
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"mif1": "image/heif",
    b"msf1": "image/heif",
}

MAX_JPEG_SCANS = 100
"""Most scans (SOS markers) a JPEG may have: each scan is a pass over the coefficients, so thousands of tiny
progressive scans would cost minutes of CPU (libjpeg-turbo's ``djpeg -maxscans`` guards against the same)."""
# PNG colour type (IHDR byte 25) -> samples per pixel.
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}

# EXIF orientation -> the transpose that shows the image upright (the table ImageOps.exif_transpose uses).
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class DecodedImage:
    """A decoded, upright RGB image.

    Attributes:
        image: RGB pixels, EXIF orientation applied. Smaller than ``width`` x ``height`` only when decoded with
            ``target_size`` (see :attr:`source_box`).
        width: Width of the upright original image: the pixels boxes are reported in.
        height: Height of the upright original image.
        media_type: The sniffed type (``image/jpeg``, ``image/png`` or ``image/webp``), whatever was declared.
        source_box: Where the original ``(0, 0, width, height)`` lies in ``image``'s pixels, as
            ``(x0, y0, x1, y1)`` floats; ``None`` when ``image`` is the full-size original.
    """

    image: Image.Image
    width: int
    height: int
    media_type: str
    source_box: tuple[float, float, float, float] | None = None

    @property
    def reduced(self) -> bool:
        """Whether ``image`` was decoded smaller than the original (JPEG DCT scaling)."""
        return self.source_box is not None


def sniff_media_type(data: bytes) -> str | None:
    """The image media type that ``data``'s magic bytes announce, or ``None`` when they announce no image format.

    Recognises JPEG, PNG and WebP (the types we decode) and, so that they can be refused as unsupported rather
    than as "not an image", GIF, BMP, TIFF, ICO, PSD, JPEG XL, JPEG 2000, QOI, AVIF and HEIF. Only the header is
    looked at; the image may still be truncated or corrupt.
    """
    head = bytes(data[:32])
    for offset, magic, media_type in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return media_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp" and head[8:12] in _FTYP_BRANDS:
        return _FTYP_BRANDS[head[8:12]]
    return None


def normalize_media_type(content_type: str | None) -> str:
    """The bare, lower-case media type of a ``Content-Type`` value (parameters dropped, aliases resolved)."""
    if content_type is None:
        return ""
    bare = content_type.split(";", 1)[0].strip().lower()
    return _ALIASES.get(bare, bare)


def decode_image(
    data: bytes,
    *,
    content_type: str | None,
    max_bytes: int,
    max_pixels: int,
    target_size: int | Callable[[int, int], int | None] | None = None,
) -> DecodedImage:
    """Validate and decode an uploaded image (the order of the checks is in the module docstring).

    Args:
        data: The request body.
        content_type: The declared ``Content-Type`` (parameters allowed); ``None`` or
            ``application/octet-stream`` to decide from the content alone.
        max_bytes: Largest accepted body, in bytes.
        max_pixels: Largest accepted ``width * height``, decided from the header before decoding.
        target_size: The model input size the whole image will be letterboxed to, to allow JPEG's faster reduced
            decoding; ``None`` (the default) decodes every pixel. See the module docstring. A callable is asked
            with the upright ``(width, height)`` read from the header, before any pixel is decoded, and answers the
            size or ``None`` (e.g. ``None`` when the image will be tiled, which needs every pixel).

    Returns:
        The decoded image.

    Raises:
        InvalidInput: Empty, not an image, or truncated or corrupt.
        UnsupportedMediaType: Declared or sniffed type other than JPEG, PNG or WebP.
        PayloadTooLarge: Over ``max_bytes`` or ``max_pixels``.
    """
    if not data:
        raise InvalidInput("the request body is empty; send a JPEG, PNG or WebP image")
    declared = normalize_media_type(content_type)
    if declared not in _UNDECLARED and declared not in ACCEPTED_MEDIA_TYPES:
        raise UnsupportedMediaType(
            f"content type {declared!r} is not supported; send {_ACCEPTED_TEXT}",
            details={"content_type": declared, "accepted": list(ACCEPTED_MEDIA_TYPES)},
        )
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            f"the image is {len(data)} bytes; the limit is {max_bytes} bytes",
            details={"bytes": len(data), "max_bytes": max_bytes},
        )
    media_type = sniff_media_type(data)
    if media_type is None:
        raise InvalidInput(f"the request body is not an image; send {_ACCEPTED_TEXT}")
    if media_type not in ACCEPTED_MEDIA_TYPES:
        raise UnsupportedMediaType(
            f"the body is a {media_type} image, which is not supported; send {_ACCEPTED_TEXT}",
            details={"sniffed": media_type, "accepted": list(ACCEPTED_MEDIA_TYPES)},
        )
    if declared in ACCEPTED_MEDIA_TYPES and declared != media_type:
        logger.debug("declared %s but the content is %s; decoding by content", declared, media_type)

    image = _open_header(data, media_type)
    width, height = image.size
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"the image is {width}x{height} = {width * height} pixels; the limit is {max_pixels} pixels",
            details={"width": width, "height": height, "max_pixels": max_pixels},
        )
    check_data_covers(data, media_type, width, height)
    reduce_to = _reduce_to(image, target_size) if media_type == "image/jpeg" else None
    try:
        box = _draft(image, reduce_to) if reduce_to else None
        image.load()
        orientation = _orientation(image)
        if orientation in _ORIENTATION:
            ImageOps.exif_transpose(image, in_place=True)
            if box is not None:
                box = _orient_box(box, image.size, orientation)
        rgb = to_rgb(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb(exc) from exc
    except Exception as exc:
        # Untrusted bytes: Pillow's decoders fail on malformed input with many exception types (OSError for
        # truncation, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError...). Each means the
        # same thing to the client, and none of them may surface as a 500.
        logger.debug("could not decode a %s image", media_type, exc_info=True)
        raise InvalidInput("the image is truncated or corrupt", details={"media_type": media_type}) from exc
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return DecodedImage(rgb, width, height, media_type, box)


def check_data_covers(data: bytes, media_type: str, width: int, height: int) -> None:
    """Refuse an image whose header claims more than its bytes can hold (step 6 of the module docstring).

    The bounds are lower limits that no complete file goes under, so a real image is never refused: a
    Huffman-coded JPEG spends at least one bit on the DC coefficient of each 8 x 8 block of its full-resolution
    component (arithmetic-coded JPEGs can go lower in theory, but only for near-uniform images); deflate packs at
    most 258 bytes into 2 bits (1032 : 1), and a PNG's raw data is one filter byte plus the packed pixels per row.
    WebP has no such bound; libwebp refuses data that ends early by itself.

    Raises:
        InvalidInput: the header claims pixels the data cannot hold, or a JPEG has more than
            :data:`MAX_JPEG_SCANS` scans.
    """
    if media_type == "image/jpeg":
        needed = _ceil_div(_ceil_div(width, 8) * _ceil_div(height, 8), 8)
        scans = data.count(b"\xff\xda")  # 0xFF in entropy-coded data is always followed by 0x00: these are markers
        if scans > MAX_JPEG_SCANS:
            raise InvalidInput(
                f"the JPEG has {scans} scans; at most {MAX_JPEG_SCANS} are decoded (a real progressive JPEG has ~10)",
                details={"scans": scans, "max_scans": MAX_JPEG_SCANS},
            )
    elif media_type == "image/png" and len(data) >= 26:
        bits = data[24] * _PNG_CHANNELS.get(data[25], 4)
        needed = _ceil_div(height * (1 + _ceil_div(width * bits, 8)), 1032)
    else:
        return
    if len(data) < needed:
        kind = _PILLOW_FORMATS[media_type]
        raise InvalidInput(
            f"the {kind} header says {width}x{height} pixels, but {len(data)} bytes cannot hold them (a complete "
            f"{kind} of that size has at least {needed} bytes): the file is truncated or its header is wrong",
            details={"width": width, "height": height, "bytes": len(data), "min_bytes": needed},
        )


def declared_pixels(data: bytes) -> int | None:
    """Width x height as the image's header declares them (Pillow reads the header only, no pixels), or None when
    the bytes are not an image we take or the header does not parse: a cheap look at what decoding would cost,
    before :func:`decode_image` checks everything."""
    media_type = sniff_media_type(data)
    if media_type is None:
        return None
    try:
        with _open_header(data, media_type) as image:
            width, height = image.size
    except SpotterError:
        return None
    return int(width) * int(height)


def _ceil_div(a: int, b: int) -> int:
    return -(a // -b)


def _open_header(data: bytes, media_type: str) -> Image.Image:
    """Open ``data`` with the one Pillow plugin its magic bytes name; this reads the header, no pixels."""
    try:
        return Image.open(io.BytesIO(data), formats=[_PILLOW_FORMATS[media_type]])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb(exc) from exc
    except Exception as exc:  # UnidentifiedImageError, SyntaxError, struct.error...
        # The magic bytes matched but the header did not parse: a damaged file, not another format.
        logger.debug("could not read the header of a %s image", media_type, exc_info=True)
        raise InvalidInput("the image is truncated or corrupt", details={"media_type": media_type}) from exc


def _bomb(exc: Exception) -> PayloadTooLarge:
    limit = Image.MAX_IMAGE_PIXELS
    return PayloadTooLarge(
        "the image declares more pixels than can be decoded safely",
        details={"reason": str(exc), "pillow_max_pixels": limit},
    )


def _reduce_to(image: Image.Image, target_size: int | Callable[[int, int], int | None] | None) -> int | None:
    """The letterbox size to decode a JPEG for, asking a callable ``target_size`` with the upright size."""
    if target_size is None or isinstance(target_size, int):
        return target_size
    width, height = image.size
    if _orientation(image) in (5, 6, 7, 8):  # EXIF is in the header: the upright size is known before decoding
        width, height = height, width
    return target_size(width, height)


def _draft(image: Image.Image, target_size: int) -> tuple[float, float, float, float] | None:
    """Ask libjpeg to decode at the smallest DCT scale that still covers a letterbox to ``target_size``.

    Returns where the original lies in the reduced image, or ``None`` when no reduction applies.
    """
    width, height = image.size
    scale = min(target_size / width, target_size / height)
    if scale > 0.5:  # DCT scaling goes in halves: no reduction can help
        return None
    needed = (max(1, int(np.ceil(width * scale))), max(1, int(np.ceil(height * scale))))
    result = image.draft("RGB", needed)
    if result is None or image.size == (width, height):
        return None
    _, box = result
    return (float(box[0]), float(box[1]), float(box[2]), float(box[3]))


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1 when absent or unreadable: a broken EXIF block is no reason to refuse pixels)."""
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
        return int(value)
    except Exception:
        logger.debug("unreadable EXIF; keeping the stored orientation", exc_info=True)
        return 1


def _orient_box(
    box: tuple[float, float, float, float], size: tuple[int, int], orientation: int
) -> tuple[float, float, float, float]:
    """Where ``box`` (in the stored image) lies after the EXIF transpose; ``size`` is the transposed image's size."""
    new_w, new_h = size
    # The size before the transpose: swapped for the orientations that rotate by 90 degrees.
    w, h = (new_h, new_w) if orientation in (5, 6, 7, 8) else (new_w, new_h)
    x0, y0, x1, y1 = box

    def point(x: float, y: float) -> tuple[float, float]:
        if orientation == 2:
            return w - x, y
        if orientation == 3:
            return w - x, h - y
        if orientation == 4:
            return x, h - y
        if orientation == 5:
            return y, x
        if orientation == 6:
            return h - y, x
        if orientation == 7:
            return h - y, w - x
        return y, w - x  # 8

    (ax, ay), (bx, by) = point(x0, y0), point(x1, y1)
    return (min(ax, bx), min(ay, by), max(ax, bx), max(ay, by))


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as RGB (itself when it already is), its first frame if animated."""
    if getattr(image, "is_animated", False):
        # Keep only the first frame: the copy lets go of the file (and the other frames).
        first = image.copy()
        image.close()
        image = first
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # 16-bit (or wider) grey: keep the high byte, as TensorFlow does when it converts to uint8. Pillow's own
        # convert clips at 255, which would turn almost every 16-bit image white.
        pixels = np.asarray(image)
        if image.mode == "F":
            eight = np.clip(pixels, 0, 255).astype(np.uint8)
        else:
            eight = (np.clip(pixels, 0, 65535).astype(np.uint32) >> 8).astype(np.uint8)
        return Image.fromarray(eight).convert("RGB")
    return image.convert("RGB")
