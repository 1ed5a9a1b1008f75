"""The hostile-image corpus: small files that lie about their size, end early or break their format.

Each entry is made here from a real image (Pillow) patched byte by byte, with the answer the gateway must give. The
files are kept under ``tests/data/hostile/images/`` with a ``manifest.json`` (name -> status, code, what it is), so
the corpus is data that CI runs (``tests/gateway/test_hostile_images.py``) and that other tools can replay. Remake
it after changing an entry:

    .venv/bin/python -m tests.support.hostile_images
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

CORPUS_DIR = Path(__file__).resolve().parents[1] / "data" / "hostile" / "images"
MANIFEST = CORPUS_DIR / "manifest.json"


@dataclass(frozen=True)
class Hostile:
    name: str
    data: bytes
    status: int
    code: str | None
    what: str


def noise(width: int, height: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def encode(array: np.ndarray, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **params)
    return buffer.getvalue()


def jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """``(marker, offset, length)`` of each segment before the first scan's data (SOI has length 0)."""
    segments = [(0xD8, 0, 0)]
    offset = 2
    while offset + 4 <= len(data) and data[offset] == 0xFF:
        marker = data[offset + 1]
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        segments.append((marker, offset, length))
        if marker == 0xDA:
            break
        offset += 2 + length
    return segments


def patch_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    """``data`` with its SOF header's height and width replaced (the scan data left as it is)."""
    for marker, offset, _ in jpeg_segments(data):
        if marker in (0xC0, 0xC1, 0xC2):
            return data[: offset + 5] + struct.pack(">HH", height, width) + data[offset + 9 :]
    raise ValueError("no SOF0/1/2 segment")


def lying_jpeg(width: int = 7000, height: int = 7000, *, progressive: bool = False) -> bytes:
    """A real 16 x 16 JPEG (well under a kilobyte) whose header claims ``width`` x ``height``."""
    return patch_jpeg_size(encode(noise(16, 16), "JPEG", quality=90, progressive=progressive), width, height)


def many_scans_jpeg(scans: int = 150) -> bytes:
    """A progressive JPEG whose first scan is repeated until it has ``scans`` scans."""
    data = encode(noise(32, 32), "JPEG", progressive=True)
    sos = next(offset for marker, offset, _ in jpeg_segments(data) if marker == 0xDA)
    following = data.find(b"\xff\xda", sos + 2)
    first_scan = data[sos:following]
    return data[:sos] + first_scan * scans + b"\xff\xd9"


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(width: int, height: int, idat: bytes | None, *, bit_depth: int = 8, colour: int = 2) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    chunks = png_chunk(b"IHDR", header) + (png_chunk(b"IDAT", idat) if idat is not None else b"")
    return b"\x89PNG\r\n\x1a\n" + chunks + png_chunk(b"IEND", b"")


def lying_png(width: int = 7000, height: int = 7000) -> bytes:
    """The pixel data of a 16 x 16 RGB PNG under a header that claims ``width`` x ``height``."""
    rows = b"".join(b"\0" + noise(16, 1, seed=row).tobytes() for row in range(16))
    return png(width, height, zlib.compress(rows))


def lying_webp(width: int = 7000, height: int = 7000, *, lossless: bool = False) -> bytes:
    """A real 16 x 16 WebP whose VP8 (or VP8L) header claims ``width`` x ``height``."""
    data = bytearray(encode(noise(16, 16), "WEBP", lossless=lossless, quality=80))
    if lossless:
        at = data.index(b"VP8L") + 9  # chunk header (8), signature byte 0x2f, then 14+14 bits of size - 1
        rest = int.from_bytes(data[at : at + 4], "little") & ~((1 << 28) - 1)
        data[at : at + 4] = ((width - 1) | ((height - 1) << 14) | rest).to_bytes(4, "little")
    else:
        at = data.index(b"\x9d\x01\x2a") + 3  # after the key frame's start code: 16-bit width and height
        data[at : at + 4] = struct.pack("<HH", width, height)
    return bytes(data)


def corpus() -> list[Hostile]:
    """Every entry, with the status and error code the gateway answers (``code`` None for a success)."""
    jpeg = encode(noise(64, 64), "JPEG")
    png_ok = encode(noise(64, 64), "PNG")
    webp = encode(noise(64, 64), "WEBP")
    bad_crc = bytearray(png_ok)
    bad_crc[29] ^= 0xFF  # the last byte of IHDR's CRC
    return [
        Hostile("lie-7000x7000.jpg", lying_jpeg(), 400, "invalid_input", "16x16 baseline JPEG claiming 7000x7000"),
        Hostile(
            "lie-7000x7000-progressive.jpg",
            lying_jpeg(progressive=True),
            400,
            "invalid_input",
            "16x16 progressive JPEG claiming 7000x7000",
        ),
        Hostile(
            "lie-3000x2000.jpg", lying_jpeg(3000, 2000), 400, "invalid_input", "16x16 JPEG claiming 3000x2000 (6 MP)"
        ),
        Hostile(
            "lie-small-64x64.jpg",
            lying_jpeg(64, 64),
            200,
            None,
            "16x16 JPEG claiming 64x64: within what its bytes can hold, decoded cheaply (libjpeg fills the rest)",
        ),
        Hostile("over-budget-65000x65000.jpg", lying_jpeg(65000, 65000), 413, "payload_too_large", "over the pixels"),
        Hostile("many-scans.jpg", many_scans_jpeg(), 400, "invalid_input", "progressive JPEG with 150 scans"),
        Hostile("truncated-half.jpg", jpeg[: len(jpeg) // 2], 400, "invalid_input", "JPEG cut in half"),
        Hostile("truncated-no-eoi.jpg", jpeg[:-2], 400, "invalid_input", "JPEG without its last 2 bytes"),
        Hostile("header-only.jpg", jpeg[: jpeg.index(b"\xff\xda")], 400, "invalid_input", "JPEG headers, no scan"),
        Hostile("garbage-after-soi.jpg", b"\xff\xd8\xff" + bytes(range(256)) * 4, 400, "invalid_input", "garbage"),
        Hostile("zero-height.jpg", patch_jpeg_size(jpeg, 64, 0), 400, "invalid_input", "SOF height 0"),
        Hostile("lie-7000x7000.png", lying_png(), 400, "invalid_input", "16x16 PNG pixel data under a 7000x7000 IHDR"),
        Hostile("truncated-half.png", png_ok[: len(png_ok) // 2], 400, "invalid_input", "PNG cut in half"),
        Hostile("no-idat.png", png(64, 64, None), 400, "invalid_input", "PNG with IHDR and IEND only"),
        Hostile("bad-crc.png", bytes(bad_crc), 400, "invalid_input", "PNG whose IHDR CRC is wrong"),
        Hostile(
            "bomb-100000x100000.png", png(100_000, 100_000, zlib.compress(b"\0" * 64)), 413, "payload_too_large", ""
        ),
        Hostile("lie-7000x7000.webp", lying_webp(), 400, "invalid_input", "16x16 lossy WebP claiming 7000x7000"),
        Hostile(
            "lie-7000x7000-lossless.webp",
            lying_webp(lossless=True),
            400,
            "invalid_input",
            "16x16 lossless WebP claiming 7000x7000",
        ),
        Hostile("truncated-half.webp", webp[: len(webp) // 2], 400, "invalid_input", "WebP cut in half"),
    ]


def write_corpus(directory: Path = CORPUS_DIR) -> None:
    """Write every entry and the manifest into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for entry in corpus():
        (directory / entry.name).write_bytes(entry.data)
        manifest[entry.name] = {"status": entry.status, "code": entry.code, "what": entry.what}
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    write_corpus()
