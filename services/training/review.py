"""Active learning's judgement of one prediction, and what people get for the images it does not accept.

Acceptance (:func:`judge`): the candidates are the boxes scoring at least ``candidate_score``. An image is accepted,
with every candidate as a box, when its best candidate's class is the image's label and scores at least
``min_score`` (``unlabelled_min_score`` for an image without a label), and every other candidate is as sure (at
least that score) and of the same class, and no two candidates overlap. Anything else goes to review, with a
reason: ``no_detection``, ``disagreement`` (the best box names another class), ``low_confidence`` (the best box is
below the threshold), ``several_candidates`` (other boxes that are unsure or of another class: accepting only some
would teach the model that real objects are background) or ``overlapping_candidates`` (boxes overlapping each other,
IoU >= :data:`OVERLAP_IOU`: the model is unsure where an object ends; seen on objects larger than it was trained on,
which it boxes in confident fragments).

Scores are high by default (0.9): even calibrated scores of 0.6-0.85 came with boxes of IoU 0.4-0.5 on objects
unlike the training data, and an accepted box is never looked at again.

Review outputs, per round (:func:`write_review`): ``review.json`` (every image, its label, the reason and the
candidate boxes), ``contact_sheet[_NN].png`` (thumbnails with the candidates drawn, the label and the reason under
each), and ``voc/`` (``images/`` and ``annotations/`` as LabelImg opens them, the candidates pre-filled; corrected,
the folder imports as a VOC dataset). Pillow only, no TensorFlow.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw
from rich.table import Table

from services.files import staging_dir
from services.store.datasets.annotations import ObjectAnnotation
from services.store.datasets.voc import write_voc
from services.vision.boxes import Detection, iou
from services.vision.draw import draw_detections

ACCEPTED = "accepted"
REASONS = ("no_detection", "disagreement", "low_confidence", "several_candidates", "overlapping_candidates")
OVERLAP_IOU = 0.1
THUMB = 224
"""Contact-sheet cell size in pixels."""
SHEET_COLUMNS = 6
SHEET_ROWS = 6


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The scores acceptance goes by (see the module's text)."""

    min_score: float = 0.9
    unlabelled_min_score: float = 0.97
    candidate_score: float = 0.2


@dataclass(slots=True)
class Verdict:
    """One pool image judged: its label (or None), the reason (``accepted`` or one of :data:`REASONS`) and the
    candidate detections (dataset class ids, pixels), best first."""

    filename: str
    label: str | None
    reason: str
    candidates: list[Detection] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return self.reason == ACCEPTED

    def objects(self) -> list[ObjectAnnotation]:
        """The candidates as boxes (what is added when accepted, and what LabelImg opens pre-filled)."""
        return [ObjectAnnotation(d.label, d.box) for d in self.candidates]

    def to_dict(self) -> dict[str, Any]:
        return {
            "filename": self.filename,
            "label": self.label,
            "reason": self.reason,
            "candidates": [d.to_dict() for d in self.candidates],
        }


def judge(filename: str, label: str | None, detections: Sequence[Detection], thresholds: Thresholds) -> Verdict:
    """Accept an image's prediction or send it to review (see the module's text)."""
    candidates = sorted((d for d in detections if d.score >= thresholds.candidate_score), key=lambda d: -d.score)
    if not candidates:
        return Verdict(filename, label, "no_detection", [])
    best = candidates[0]
    if label is not None and best.label != label:
        return Verdict(filename, label, "disagreement", candidates)
    needed = thresholds.min_score if label is not None else thresholds.unlabelled_min_score
    if best.score < needed:
        return Verdict(filename, label, "low_confidence", candidates)
    if any(d.score < needed or d.label != best.label for d in candidates[1:]):
        return Verdict(filename, label, "several_candidates", candidates)
    if any(iou(a.box, b.box) >= OVERLAP_IOU for i, a in enumerate(candidates) for b in candidates[i + 1 :]):
        return Verdict(filename, label, "overlapping_candidates", candidates)
    return Verdict(filename, label, ACCEPTED, candidates)


def _flat_name(filename: str) -> str:
    """A pool path as one file name (``homer/001.jpg`` -> ``homer__001.jpg``), so the VOC folder is flat."""
    return filename.replace("/", "__")


def write_review(folder: Path, verdicts: Sequence[Verdict], images: dict[str, bytes]) -> dict[str, Any]:
    """Write the review outputs of the images not accepted into ``folder``; what was written (paths, count).

    The folder is built aside and moved into place whole (:func:`services.files.staging_dir`), so a reviewer never
    finds a half-written one: a crash leaves the previous folder, or none.
    """
    todo = [v for v in verdicts if not v.accepted]
    with staging_dir(folder) as work:
        (work / "review.json").write_text(json.dumps([v.to_dict() for v in todo], indent=2) + "\n", encoding="utf-8")
        voc = work / "voc"
        (voc / "images").mkdir(parents=True, exist_ok=True)
        (voc / "annotations").mkdir(parents=True, exist_ok=True)
        for verdict in todo:
            data = images[verdict.filename]
            name = _flat_name(verdict.filename)
            (voc / "images" / name).write_bytes(data)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
            xml = voc / "annotations" / f"{Path(name).stem}.xml"
            write_voc(xml, name, width, height, verdict.objects(), folder="images")
        sheets = [folder / p.relative_to(work) for p in contact_sheets(work, todo, images)]
    return {
        "images": len(todo),
        "json": str(folder / "review.json"),
        "contact_sheets": [str(p) for p in sheets],
        "voc": str(folder / "voc"),
    }


def contact_sheets(folder: Path, verdicts: Sequence[Verdict], images: dict[str, bytes]) -> list[Path]:
    """Pages of thumbnails with the candidate boxes drawn, and the label and reason under each (none if no image)."""
    per_page = SHEET_COLUMNS * SHEET_ROWS
    pages = math.ceil(len(verdicts) / per_page)
    written = []
    caption = 30
    for page in range(pages):
        chunk = verdicts[page * per_page : (page + 1) * per_page]
        rows = math.ceil(len(chunk) / SHEET_COLUMNS)
        sheet = Image.new("RGB", (SHEET_COLUMNS * THUMB, rows * (THUMB + caption)), "white")
        draw = ImageDraw.Draw(sheet)
        for i, verdict in enumerate(chunk):
            with Image.open(io.BytesIO(images[verdict.filename])) as image:
                drawn = draw_detections(image, verdict.candidates)
            drawn.thumbnail((THUMB, THUMB))
            x, y = (i % SHEET_COLUMNS) * THUMB, (i // SHEET_COLUMNS) * (THUMB + caption)
            sheet.paste(drawn, (x + (THUMB - drawn.width) // 2, y + (THUMB - drawn.height) // 2))
            draw.text((x + 4, y + THUMB + 2), verdict.filename[-34:], fill="black")
            draw.text((x + 4, y + THUMB + 15), f"{verdict.label or '(no label)'}: {verdict.reason}", fill="firebrick")
        name = "contact_sheet.png" if pages == 1 else f"contact_sheet_{page + 1:02d}.png"
        sheet.save(folder / name)
        written.append(folder / name)
    return written


def _ap(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "-"


def rounds_table(report: dict[str, Any]) -> Table:
    """The per-round report for the job's log: per class and round, boxed images before, accepted, sent to review,
    and AP@0.5 after (the baseline as round 0)."""
    table = Table(title=f"active learning: {report['model']} on {report['dataset']}")
    for column in ("round", "class", "labelled before", "accepted", "review", "AP@0.5 before", "AP@0.5 after"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for entry in report["rounds"]:
        for name, row in entry["per_class"].items():
            table.add_row(
                str(entry["round"]),
                name,
                f"{row['labelled_before']['images']} ({row['labelled_before']['boxes']})",
                f"{row['accepted']['images']} ({row['accepted']['boxes']})",
                str(row["review"]),
                _ap(entry["ap50_before"].get(name)),
                _ap((entry.get("ap50_after") or {}).get(name)),
            )
        table.add_row(
            str(entry["round"]),
            "all",
            "",
            f"{entry['accepted']} (+{entry['increase']:.0%})",
            str(entry["review"]),
            _ap(entry["map50_before"]),
            _ap(entry.get("map50_after")),
            style="bold",
            end_section=True,
        )
    return table
