"""Small image makers shared by the vision tests."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def patched(width: int, height: int, patch: tuple[int, int, int, int], colour=(255, 0, 0)) -> Image.Image:
    """A grey ``width`` x ``height`` image with a solid ``colour`` rectangle ``(x0, y0, x1, y1)``."""
    pixels = np.full((height, width, 3), 128, dtype=np.uint8)
    x0, y0, x1, y1 = patch
    pixels[y0:y1, x0:x1] = colour
    return Image.fromarray(pixels)


def png_declaring(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG header (signature, IHDR, a small IDAT, IEND) that declares ``width`` x ``height``.

    The IDAT holds far fewer rows than declared, so decoding it would fail; a decoder that allocated the declared
    size first would need width * height * 3 bytes.
    """

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) is patched to declare ``width`` x ``height``."""
    data = bytearray(encode(Image.new("RGB", (16, 16), (10, 20, 30)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    # SOF0: marker(2) length(2) precision(1) height(2) width(2)
    data[sof + 5 : sof + 7] = struct.pack(">H", height)
    data[sof + 7 : sof + 9] = struct.pack(">H", width)
    return bytes(data)


def with_orientation(image: Image.Image, orientation: int, fmt: str = "JPEG") -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, fmt, exif=exif, quality=95) if fmt == "JPEG" else encode(image, fmt, exif=exif)
