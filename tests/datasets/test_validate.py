"""Every image and box checked against the real image; all problems in one report, with file and row/element."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from services.store.datasets.annotations import DatasetKind, ImageAnnotation, ObjectAnnotation
from services.store.datasets.problems import ProblemReport, Severity
from services.store.datasets.validate import check_box, inspect_image, validate_images
from services.vision.boxes import Box
from services.vision.images import decode_image
from tests.datasets.fixtures import scenes


@pytest.fixture
def jpeg(tmp_path: Path) -> Path:
    path = tmp_path / "a.jpg"
    scenes(count=1)[0].image.save(path, format="JPEG")  # 112 x 112
    return path


def _obj(label: str, *box: float, where: str = "object[1]") -> ObjectAnnotation:
    return ObjectAnnotation(label, Box(*box), where=where)


@pytest.mark.parametrize(
    ("box", "kept", "code"),
    [
        ((10, 10, 50, 50), (10, 10, 50, 50), ""),
        ((-3, 10, 50, 115), (0, 10, 50, 112), "box_clipped"),
        ((50, 10, 10, 50), None, "box_inverted"),
        ((10, 50, 50, 10), None, "box_inverted"),
        ((10, 10, 10, 50), None, "box_empty"),
        ((100, 100, 200, 200), None, "box_outside"),
        ((200, 200, 250, 250), None, "box_outside"),
        ((10, 10, float("nan"), 50), None, "bad_box"),  # a TFRecord source's NaN (readers refuse it earlier)
        ((10, float("-inf"), 50, 50), None, "bad_box"),
        ((10, 10, float("inf"), 50), None, "bad_box"),
    ],
)
def test_box_rules(box: tuple[float, ...], kept: tuple[float, ...] | None, code: str) -> None:
    result, found, _ = check_box(_obj("c", *box), 112, 112)
    assert found == code
    assert (result.as_tuple() if result else None) == kept


def test_all_problems_of_a_dataset_are_in_one_report(tmp_path: Path, jpeg: Path) -> None:
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(jpeg.read_bytes()[:600])
    text = tmp_path / "text.jpg"
    text.write_bytes(b"not an image at all")
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(jpeg.read_bytes())
    annotations = [
        ImageAnnotation(
            "a.jpg",
            jpeg,
            "a.xml",
            width=100,
            height=112,
            objects=[
                _obj("circle", 10, 10, 40, 40, where="object[1]"),
                _obj("circle", -2, 10, 40, 40, where="object[2]"),
                _obj("circle", 40, 40, 10, 10, where="object[3]"),
                _obj("circle", 5, 5, 5, 30, where="object[4]"),
                _obj("unicorn", 10, 10, 40, 40, where="object[5]"),
            ],
        ),
        ImageAnnotation("truncated.jpg", truncated, "t.xml", objects=[_obj("circle", 1, 1, 5, 5)]),
        ImageAnnotation("text.jpg", text, "x.xml", objects=[_obj("circle", 1, 1, 5, 5)]),
        ImageAnnotation("copy.jpg", copy, "c.xml", objects=[_obj("circle", 1, 1, 5, 5)]),
        ImageAnnotation("bad-boxes.jpg", jpeg, "b.xml", objects=[_obj("circle", 9, 9, 1, 1)]),
    ]
    report = ProblemReport()
    valid = validate_images(
        annotations, report, kind=DatasetKind.DETECTION, classes={"circle"}, reencode_dir=tmp_path / "re"
    )
    found = [(p.severity, p.code, p.file, p.where) for p in report.problems]
    assert found == [
        (Severity.WARNING, "size_mismatch", "a.xml", "<size>"),
        (Severity.WARNING, "box_clipped", "a.xml", "object[2]"),
        (Severity.ERROR, "box_inverted", "a.xml", "object[3]"),
        (Severity.ERROR, "box_empty", "a.xml", "object[4]"),
        (Severity.ERROR, "unknown_class", "a.xml", "object[5]"),
        (Severity.ERROR, "unreadable_image", "truncated.jpg", ""),
        (Severity.ERROR, "not_an_image", "text.jpg", ""),
        (Severity.WARNING, "duplicate_image", "copy.jpg", ""),
        (Severity.WARNING, "duplicate_image", "bad-boxes.jpg", ""),
    ]
    [kept] = valid
    assert (kept.width, kept.height) == (112, 112)  # the real size, not the declared 100
    assert [o.box for o in kept.objects] == [Box(10, 10, 40, 40), Box(0, 10, 40, 40)]
    assert kept.labels == ["circle"]


def test_an_image_whose_boxes_were_all_rejected_is_dropped(tmp_path: Path, jpeg: Path) -> None:
    report = ProblemReport()
    ann = ImageAnnotation("a.jpg", jpeg, "a.xml", objects=[_obj("circle", 9, 9, 1, 1)])
    background = ImageAnnotation("a.jpg", jpeg, "b.xml")  # never had boxes: kept
    valid = validate_images([ann], report, kind=DatasetKind.DETECTION, classes=None, reencode_dir=tmp_path)
    assert valid == [] and [p.code for p in report.problems] == ["box_inverted", "no_valid_boxes"]
    valid = validate_images([background], report, kind=DatasetKind.DETECTION, classes=None, reencode_dir=tmp_path)
    assert len(valid) == 1 and valid[0].objects == []


@pytest.mark.parametrize("mode", ["CMYK", "I;16", "1"])
def test_images_tensorflow_cannot_take_as_they_are_are_reencoded(mode: str, tmp_path: Path) -> None:
    path = tmp_path / "odd.png"
    image = Image.new("RGB", (20, 10), (200, 30, 30)).convert(mode)
    image.save(path, format="TIFF" if mode == "CMYK" else "PNG")
    info = inspect_image(path)
    assert (info.width, info.height, info.format) == (20, 10, "png")
    assert info.data is not None
    report = ProblemReport()
    [valid] = validate_images(
        [ImageAnnotation("odd.png", path, "odd.png", labels=["x"])],
        report,
        kind=DatasetKind.CLASSIFICATION,
        classes=None,
        reencode_dir=tmp_path / "re",
    )
    assert valid.format == "png" and valid.path.parent == tmp_path / "re"
    assert [p.code for p in report.problems] == ["reencoded"]


def test_sixteen_bit_grey_is_reencoded_by_its_high_byte_as_the_gateway_decodes_it(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    pixels = np.array([[0x0000, 0x40FF], [0x8040, 0xFFFF]], dtype=np.uint16)
    Image.fromarray(pixels).save(path, format="PNG")
    info = inspect_image(path)
    assert info.data is not None
    with Image.open(io.BytesIO(info.data)) as image:
        assert image.mode == "RGB" and np.asarray(image)[..., 0].tolist() == [[0x00, 0x40], [0x80, 0xFF]]
    assert (
        np.asarray(
            decode_image(path.read_bytes(), content_type="image/png", max_bytes=1 << 20, max_pixels=1 << 20).image
        ).tolist()
        == np.asarray(Image.open(io.BytesIO(info.data))).tolist()
    )


def test_too_many_pixels_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (400, 300)).save(path)
    report = ProblemReport()
    valid = validate_images(
        [ImageAnnotation("big.png", path, "big.png", labels=["x"])],
        report,
        kind=DatasetKind.CLASSIFICATION,
        classes=None,
        reencode_dir=tmp_path,
        max_pixels=100_000,
    )
    assert valid == [] and report.problems[0].code == "image_too_large"
