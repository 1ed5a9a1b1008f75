"""The review folder is written whole or not at all (services/training/review.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from services.training.review import Verdict, write_review
from services.vision.boxes import Box, Detection


def _jpeg(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "JPEG", quality=90)
    return out.getvalue()


def _verdicts() -> tuple[list[Verdict], dict[str, bytes]]:
    images = {"homer/001.jpg": _jpeg(640, 480, (200, 180, 40)), "002.jpg": _jpeg(1024, 768, (30, 60, 90))}
    box = Box(40.0, 30.0, 300.0, 260.0)
    verdicts = [
        Verdict("homer/001.jpg", "homer", "low_confidence", [Detection("homer", 1, 0.55, box)]),
        Verdict("002.jpg", None, "no_detection", []),
    ]
    return verdicts, images


def test_review_folder_holds_every_image_not_accepted(tmp_path: Path) -> None:
    verdicts, images = _verdicts()
    written = write_review(tmp_path / "review", verdicts, images)

    folder = tmp_path / "review"
    assert written["images"] == 2
    assert sorted(p.name for p in (folder / "voc" / "images").iterdir()) == ["002.jpg", "homer__001.jpg"]
    assert sorted(p.name for p in (folder / "voc" / "annotations").iterdir()) == ["002.xml", "homer__001.xml"]
    assert [v["filename"] for v in json.loads((folder / "review.json").read_text())] == ["homer/001.jpg", "002.jpg"]
    assert written["contact_sheets"] and all(
        Path(p).is_file() and folder in Path(p).parents for p in written["contact_sheets"]
    )
    assert [p.name for p in tmp_path.iterdir()] == ["review"]  # nothing left beside it


def test_a_failed_write_leaves_the_previous_folder_and_no_debris(tmp_path: Path) -> None:
    verdicts, images = _verdicts()
    write_review(tmp_path / "review", verdicts[:1], images)
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))

    del images["002.jpg"]  # the second image cannot be written: the write fails half-way
    with pytest.raises(KeyError):
        write_review(tmp_path / "review", verdicts, images)

    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before
