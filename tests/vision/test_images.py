from __future__ import annotations

import resource
import warnings

import numpy as np
import pytest
from PIL import Image

from services.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from services.vision.images import ACCEPTED_MEDIA_TYPES, DecodedImage, decode_image, sniff_media_type
from services.vision.letterbox import letterbox
from tests.vision.support import encode, jpeg_declaring, patched, png_declaring, with_orientation

LIMITS = {"max_bytes": 5_000_000, "max_pixels": 20_000_000}
JPEG = encode(patched(64, 48, (0, 0, 16, 16)), "JPEG", quality=95)
PNG = encode(patched(64, 48, (0, 0, 16, 16)), "PNG")


def decode(data: bytes, content_type: str | None = "application/octet-stream", **kwargs: object) -> DecodedImage:
    params = {**LIMITS, **kwargs}
    return decode_image(data, content_type=content_type, **params)  # type: ignore[arg-type]


def mean_colour(image: Image.Image, box: tuple[int, int, int, int]) -> np.ndarray:
    return np.asarray(image.crop(box), dtype=np.float64).reshape(-1, 3).mean(axis=0)


# --- what is refused, and as what ---------------------------------------------------------------------------------


def test_empty_body_is_invalid_input_before_anything_else() -> None:
    with pytest.raises(InvalidInput, match="empty"):
        decode(b"", "text/plain", max_bytes=0)


@pytest.mark.parametrize("content_type", ["text/plain", "application/json", "image/gif", "image/svg+xml"])
def test_declared_types_we_do_not_take_are_415_naming_the_accepted_ones(content_type: str) -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        decode(JPEG, content_type)
    for accepted in ACCEPTED_MEDIA_TYPES:
        assert accepted in caught.value.message
    assert caught.value.details["accepted"] == list(ACCEPTED_MEDIA_TYPES)


def test_declared_type_is_checked_before_the_size() -> None:
    with pytest.raises(UnsupportedMediaType):
        decode(b"x" * 100, "text/plain", max_bytes=10)


@pytest.mark.parametrize(
    "content_type", [None, "", "application/octet-stream", "image/jpeg; charset=binary", "IMAGE/JPG"]
)
def test_undeclared_or_parameterised_types_are_sniffed(content_type: str | None) -> None:
    assert decode(JPEG, content_type).media_type == "image/jpeg"


def test_over_max_bytes_is_413() -> None:
    with pytest.raises(PayloadTooLarge) as caught:
        decode(JPEG, "image/jpeg", max_bytes=len(JPEG) - 1)
    assert caught.value.details == {"bytes": len(JPEG), "max_bytes": len(JPEG) - 1}
    assert decode(JPEG, "image/jpeg", max_bytes=len(JPEG)).width == 64


def test_a_gif_sent_as_octet_stream_is_415() -> None:
    gif = encode(Image.new("RGB", (8, 8), (1, 2, 3)), "GIF")
    with pytest.raises(UnsupportedMediaType, match="image/gif"):
        decode(gif)


@pytest.mark.parametrize("body", [b"hello, I am text", b'{"json": true}', bytes(range(256)) * 4])
def test_garbage_sent_as_image_jpeg_is_400(body: bytes) -> None:
    with pytest.raises(InvalidInput, match="not an image"):
        decode(body, "image/jpeg")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_images_are_400(fmt: str) -> None:
    rng = np.random.default_rng(1)
    noisy = Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    data = encode(noisy, fmt)
    with pytest.raises(InvalidInput, match="truncated or corrupt"):
        decode(data[: len(data) // 2])


def test_magic_bytes_followed_by_garbage_are_400() -> None:
    with pytest.raises(InvalidInput, match="truncated or corrupt"):
        decode(b"\xff\xd8\xff" + b"\x00garbage" * 20, "image/jpeg")
    with pytest.raises(InvalidInput, match="truncated or corrupt"):
        decode(b"\x89PNG\r\n\x1a\n" + b"garbage!" * 20, "image/png")


def test_pixel_limit_is_decided_from_the_header() -> None:
    with pytest.raises(PayloadTooLarge) as caught:
        decode(png_declaring(5000, 4000), max_pixels=19_999_999)
    assert caught.value.details == {"width": 5000, "height": 4000, "max_pixels": 19_999_999}
    with pytest.raises(PayloadTooLarge):
        decode(jpeg_declaring(5000, 4000), max_pixels=19_999_999)


@pytest.mark.parametrize("data", [png_declaring(60000, 60000), jpeg_declaring(65000, 65000)], ids=["png", "jpeg"])
def test_a_decompression_bomb_costs_no_memory(data: bytes) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with pytest.raises(PayloadTooLarge):
        decode(data, max_pixels=10**12)  # our limit is off: Pillow's own guard refuses it, as ours
    with pytest.raises(PayloadTooLarge):
        decode(data)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert len(data) < 1000
    assert grown_mib < 50, f"decoding grew the process by {grown_mib:.0f} MiB"


@pytest.mark.parametrize("data", [png_declaring(7000, 7000), jpeg_declaring(7000, 7000)], ids=["png", "jpeg"])
def test_a_header_that_claims_more_than_the_bytes_hold_is_400_before_decoding(data: bytes) -> None:
    # Within the pixel budget, so only the bytes can tell: a few hundred cannot hold 49 M pixels.
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(InvalidInput, match="7000x7000 pixels, but") as caught:
        decode(data, max_pixels=50_000_000)
    assert caught.value.details["bytes"] == len(data) < caught.value.details["min_bytes"]
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 50, f"refusing it grew the process by {grown_mib:.0f} MiB"


def _solid_jpeg(mode: str, size: tuple[int, int], **params: object) -> bytes:
    return encode(Image.new(mode, size, 128 if mode == "L" else (128, 128, 128)), "JPEG", **params)


def _solid_png(mode: str, size: tuple[int, int]) -> bytes:
    return encode(Image.new(mode, size, 0), "PNG", optimize=True)


@pytest.mark.parametrize(
    ("data", "size"),
    [
        # The most compressible files there are: one colour, optimised Huffman tables, progressive EOB runs.
        (_solid_jpeg("L", (2048, 2048), optimize=True, progressive=True), (2048, 2048)),
        (_solid_jpeg("RGB", (3000, 2000), optimize=True, progressive=True), (3000, 2000)),
        (_solid_jpeg("RGB", (3000, 2000), optimize=True, subsampling=2), (3000, 2000)),
        (_solid_png("1", (4000, 3000)), (4000, 3000)),
        (_solid_png("L", (3000, 3000)), (3000, 3000)),
    ],
    ids=["jpeg-grey-progressive", "jpeg-rgb-progressive", "jpeg-rgb-420", "png-1bit", "png-grey"],
)
def test_the_bytes_bound_refuses_no_real_image(data: bytes, size: tuple[int, int]) -> None:
    decoded = decode(data)
    assert (decoded.width, decoded.height) == size


def test_a_jpeg_with_too_many_scans_is_400() -> None:
    progressive = _solid_jpeg("L", (64, 64), progressive=True)
    sos = progressive.index(b"\xff\xda")
    scan = progressive[sos : progressive.index(b"\xff\xda", sos + 2)]
    with pytest.raises(InvalidInput, match="scans") as caught:
        decode(progressive[:sos] + scan * 150 + b"\xff\xd9")
    assert caught.value.details == {"scans": 150, "max_scans": 100}


def test_pillows_bomb_warning_turned_into_an_error_is_still_413() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(PayloadTooLarge):
            decode(png_declaring(10000, 10000), max_pixels=10**12)


# --- what is decoded, and how ------------------------------------------------------------------------------------


def test_content_decides_over_the_declared_type() -> None:
    decoded = decode(PNG, "image/jpeg")
    assert decoded.media_type == "image/png"
    assert (decoded.width, decoded.height) == (64, 48)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_each_accepted_format_decodes_to_rgb(fmt: str) -> None:
    source = patched(64, 48, (0, 0, 16, 16))
    decoded = decode(encode(source, fmt, quality=95))
    assert decoded.image.mode == "RGB"
    assert decoded.image.size == (64, 48) == (decoded.width, decoded.height)
    assert not decoded.reduced
    assert np.allclose(mean_colour(decoded.image, (2, 2, 14, 14)), (255, 0, 0), atol=12)


@pytest.mark.parametrize(
    ("orientation", "size", "patch"),
    [
        (1, (60, 40), (0, 0, 20, 20)),
        (3, (60, 40), (40, 20, 60, 40)),  # 180 degrees: top-left ends bottom-right
        (6, (40, 60), (20, 0, 40, 20)),  # shown turned 90 degrees clockwise: top-left ends top-right
        (8, (40, 60), (0, 40, 20, 60)),  # counter-clockwise: top-left ends bottom-left
    ],
)
def test_exif_orientation_is_applied(orientation: int, size: tuple[int, int], patch: tuple[int, int, int, int]) -> None:
    stored = patched(60, 40, (0, 0, 20, 20))
    decoded = decode(with_orientation(stored, orientation))
    assert (decoded.width, decoded.height) == size == decoded.image.size
    x0, y0, x1, y1 = patch
    assert np.allclose(mean_colour(decoded.image, (x0 + 3, y0 + 3, x1 - 3, y1 - 3)), (255, 0, 0), atol=15)
    assert decoded.image.getexif().get(0x0112, 1) == 1


def test_exif_orientation_in_a_png_is_applied() -> None:
    decoded = decode(with_orientation(patched(60, 40, (0, 0, 20, 20)), 6, "PNG"))
    assert decoded.image.size == (40, 60)
    assert np.allclose(mean_colour(decoded.image, (20, 0, 40, 20)), (255, 0, 0))


def test_modes_become_rgb() -> None:
    grey = Image.new("L", (8, 8), 77)
    rgba = Image.new("RGBA", (8, 8), (10, 20, 30, 100))
    palette = Image.new("RGB", (8, 8), (200, 10, 10)).convert("P")
    la = Image.new("LA", (8, 8), (90, 128))
    bilevel = Image.new("1", (8, 8), 1)
    sixteen = Image.fromarray(np.full((8, 8), 0x8040, dtype=np.uint16))
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))
    cases = [
        (encode(grey, "PNG"), (77, 77, 77)),
        (encode(rgba, "PNG"), (10, 20, 30)),  # alpha dropped, colour kept (as TensorFlow decodes)
        (encode(palette, "PNG"), (200, 10, 10)),
        (encode(la, "PNG"), (90, 90, 90)),
        (encode(bilevel, "PNG"), (255, 255, 255)),
        (encode(sixteen, "PNG"), (0x80, 0x80, 0x80)),  # the high byte, not clipped to white
        (encode(grey, "JPEG"), (77, 77, 77)),
        (encode(cmyk, "JPEG"), (255, 0, 0)),
        (encode(rgba, "WEBP", lossless=True), (10, 20, 30)),
    ]
    for data, colour in cases:
        decoded = decode(data)
        assert decoded.image.mode == "RGB"
        assert np.allclose(mean_colour(decoded.image, (0, 0, 8, 8)), colour, atol=3), (decoded.media_type, colour)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_animated_images_give_their_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in ((0, 200, 0), (0, 0, 200), (200, 0, 0))]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], lossless=True)
    decoded = decode(data)
    assert np.allclose(mean_colour(decoded.image, (0, 0, 16, 16)), (0, 200, 0), atol=2)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (JPEG, "image/jpeg"),
        (PNG, "image/png"),
        (encode(Image.new("RGB", (4, 4)), "WEBP"), "image/webp"),
        (encode(Image.new("RGB", (4, 4)), "GIF"), "image/gif"),
        (encode(Image.new("RGB", (4, 4)), "BMP"), "image/bmp"),
        (encode(Image.new("RGB", (4, 4)), "TIFF"), "image/tiff"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00", "image/avif"),
        (b"plain text", None),
        (b"", None),
    ],
)
def test_sniff_media_type(data: bytes, expected: str | None) -> None:
    assert sniff_media_type(data) == expected


# --- reduced JPEG decoding ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", [1, 3, 6, 7])
def test_reduced_decoding_keeps_original_pixels_for_boxes(orientation: int) -> None:
    # Odd sizes, so that the DCT-scaled image is not an exact fraction of the original.
    stored = patched(1283, 721, (100, 60, 400, 300), colour=(255, 0, 0))
    data = with_orientation(stored, orientation)
    full = decode(data)
    reduced = decode(data, target_size=160)
    assert reduced.reduced and not full.reduced
    assert reduced.image.width < full.image.width
    assert (reduced.width, reduced.height) == (full.width, full.height)
    canvas_full, placed_full = letterbox(full, 160)
    canvas_reduced, placed_reduced = letterbox(reduced, 160)
    assert placed_full == placed_reduced
    # Same geometry: the red patch covers the same canvas pixels (to within the resampling blur at its edges).
    red_full = canvas_full[..., 0].astype(int) - canvas_full[..., 1] > 60
    red_reduced = canvas_reduced[..., 0].astype(int) - canvas_reduced[..., 1] > 60
    assert (red_full != red_reduced).sum() <= 0.05 * red_full.sum()
    assert np.abs(canvas_full.astype(int) - canvas_reduced).mean() < 3


def test_reduced_decoding_only_where_it_helps() -> None:
    small = encode(patched(300, 200, (0, 0, 10, 10)), "JPEG")
    assert not decode(small, target_size=320).reduced  # no shrinking needed: full size
    png = encode(patched(1300, 700, (0, 0, 10, 10)), "PNG")
    assert not decode(png, target_size=160).reduced  # only JPEG has DCT scaling


@pytest.mark.parametrize("orientation", [1, 6])
def test_a_callable_target_size_decides_from_the_upright_header_size(orientation: int) -> None:
    data = with_orientation(patched(1283, 721, (100, 60, 400, 300)), orientation)
    asked: list[tuple[int, int]] = []

    def whole_view(width: int, height: int) -> int | None:
        asked.append((width, height))
        return 160

    reduced = decode(data, target_size=whole_view)
    upright = (721, 1283) if orientation == 6 else (1283, 721)
    assert asked == [upright]
    assert reduced.reduced and (reduced.width, reduced.height) == upright
    assert letterbox(reduced, 160)[1] == letterbox(decode(data, target_size=160), 160)[1]
    # ``None`` (an image to be tiled): every pixel.
    full = decode(data, target_size=lambda width, height: None)
    assert not full.reduced and full.image.size == upright


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_mutated_images_only_ever_raise_our_errors(fmt: str) -> None:
    rng = np.random.default_rng(11)
    pixels = rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)
    original = encode(Image.fromarray(pixels), fmt)
    outcomes = {"decoded": 0, "refused": 0}
    for _ in range(300):
        data = bytearray(original)
        for _ in range(int(rng.integers(1, 8))):  # flip a few bytes, header included
            data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        if rng.random() < 0.3:
            data = data[: int(rng.integers(1, len(data)))]
        try:
            decoded = decode(bytes(data))
        except (InvalidInput, UnsupportedMediaType, PayloadTooLarge):
            outcomes["refused"] += 1
        else:
            assert decoded.image.mode == "RGB" and decoded.image.size == (decoded.width, decoded.height)
            outcomes["decoded"] += 1
    assert outcomes["refused"] > 0
