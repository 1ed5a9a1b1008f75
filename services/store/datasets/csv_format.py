"""CSV annotations: ``filename,width,height,class,xmin,ymin,xmax,ymax`` in pixels, one row per box.

This is the layout of the public raccoon and Wally datasets (and of the ``xml_to_csv`` scripts that go with the TF
Object Detection API tutorials). Columns are found by name, in any order, extra columns ignored. A row whose class
and box are all empty is an image without objects (a background image). Several CSV files in one import are read
together (``train_labels.csv`` and ``test_labels.csv``): the split is made afresh anyway.

Numbers are read strictly (:func:`~.annotations.parse_number`: no ``nan``, ``inf`` or ``4_0``). A row with a bad box
or no class is rejected; an image whose rows were all rejected is dropped and listed (by :mod:`.validate`), never
kept as a background image. The CSV may sit anywhere in the archive (``annotations/labels.csv`` beside
``images/``): file names are looked for beside it, at the archive's root, then by name (see :mod:`.paths`).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from services.store.datasets.annotations import ImageAnnotation, ObjectAnnotation, parse_number
from services.store.datasets.paths import AmbiguousImage, find_image
from services.store.datasets.problems import ProblemReport
from services.vision.boxes import Box

COLUMNS = ("filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax")
MAX_CSV_BYTES = 256 << 20


def read_csv_files(
    csv_paths: list[Path], root: Path, images: dict[str, list[Path]], report: ProblemReport
) -> list[ImageAnnotation]:
    """Read every CSV file; rows of the same image (even across files) become one :class:`ImageAnnotation`."""
    by_image: dict[Path, ImageAnnotation] = {}
    seen_rows: dict[tuple[str, ...], str] = {}
    for csv_path in csv_paths:
        _read_one(csv_path, root, images, report, by_image, seen_rows)
    return list(by_image.values())


def _read_one(
    csv_path: Path,
    root: Path,
    images: dict[str, list[Path]],
    report: ProblemReport,
    by_image: dict[Path, ImageAnnotation],
    seen_rows: dict[tuple[str, ...], str],
) -> None:
    rel = csv_path.relative_to(root).as_posix()
    data = csv_path.read_bytes()
    if len(data) > MAX_CSV_BYTES:
        report.fatal("csv_too_large", rel, "", f"{len(data)} bytes; at most {MAX_CSV_BYTES} per CSV file")
        return
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        report.fatal("csv_encoding", rel, f"byte {exc.start}", "not UTF-8 text")
        return
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        report.fatal("csv_empty", rel, "", "the file is empty")
        return
    names = [h.strip().lower() for h in header]
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        report.fatal(
            "csv_header", rel, "row 1", f"missing column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}"
        )
        return
    index = {c: names.index(c) for c in COLUMNS}
    missing_images: set[str] = set()
    try:
        for row in reader:
            where = f"row {reader.line_num}"
            if not any(cell.strip() for cell in row):
                continue
            if len(row) < len(names):
                report.error("csv_short_row", rel, where, f"{len(row)} fields; the header has {len(names)}")
                continue
            cells = {c: row[i].strip() for c, i in index.items()}
            _read_row(cells, where, rel, csv_path, root, images, report, by_image, seen_rows, missing_images)
    except csv.Error as exc:
        report.fatal("csv_malformed", rel, f"row {reader.line_num}", f"not valid CSV: {exc}")


def _read_row(
    cells: dict[str, str],
    where: str,
    rel: str,
    csv_path: Path,
    root: Path,
    images: dict[str, list[Path]],
    report: ProblemReport,
    by_image: dict[Path, ImageAnnotation],
    seen_rows: dict[tuple[str, ...], str],
    missing_images: set[str],
) -> None:
    filename = cells["filename"]
    if not filename:
        report.error("missing_filename", rel, where, "the row names no image")
        return
    key = tuple(cells[c] for c in ("filename", "class", "xmin", "ymin", "xmax", "ymax"))
    if key in seen_rows:
        report.warning("duplicate_row", rel, where, f"same image, class and box as {seen_rows[key]}; dropped")
        return
    seen_rows[key] = f"{rel} {where}"

    obj, rejected = _read_object(cells, where, rel, filename, report)
    try:
        image_path = find_image(filename, csv_path.parent, root, images)
    except AmbiguousImage as exc:
        if filename not in missing_images:
            missing_images.add(filename)
            report.error("ambiguous_image", rel, where, exc.describe(filename, root))
        return
    if image_path is None:
        if filename not in missing_images:
            missing_images.add(filename)
            report.error("missing_image", rel, where, f"image {filename!r} not found in the archive")
        return
    annotation = by_image.get(image_path)
    if annotation is None:
        annotation = ImageAnnotation(
            filename=image_path.relative_to(root).as_posix(),
            path=image_path,
            source=rel,
            where=where,
            width=_size(cells["width"], "width", where, rel, report),
            height=_size(cells["height"], "height", where, rel, report),
        )
        by_image[image_path] = annotation
    else:
        declared = (
            _size(cells["width"], "width", where, rel, None),
            _size(cells["height"], "height", where, rel, None),
        )
        if None not in declared and declared != (annotation.width, annotation.height):
            report.warning(
                "inconsistent_size",
                rel,
                where,
                f"{annotation.filename}: declares {declared[0]}x{declared[1]}; {annotation.where} did not",
            )
    if obj is not None:
        annotation.objects.append(obj)
    annotation.rejected += rejected


def _read_object(
    cells: dict[str, str], where: str, rel: str, filename: str, report: ProblemReport
) -> tuple[ObjectAnnotation | None, int]:
    """The row's box, or none (a background row); and 1 when the row had a box that is rejected."""
    label = cells["class"]
    coords_text = [cells[c] for c in ("xmin", "ymin", "xmax", "ymax")]
    if not label and not any(coords_text):
        return None, 0
    if not label:
        report.error("missing_class", rel, where, f"{filename}: the row has a box but no class; it is rejected")
        return None, 1
    coords: list[float] = []
    for column, text in zip(("xmin", "ymin", "xmax", "ymax"), coords_text, strict=True):
        try:
            coords.append(parse_number(text))
        except ValueError:
            shown = ",".join(coords_text)
            report.error(
                "bad_box", rel, where, f"{filename}: {column} {text!r} of box {shown!r} is not a number; it is rejected"
            )
            return None, 1
    return ObjectAnnotation(label=label, box=Box(*coords), where=f"{where} {label!r}"), 0


def _size(text: str, column: str, where: str, rel: str, report: ProblemReport | None) -> int | None:
    if not text:
        return None
    try:
        value = int(parse_number(text))
    except ValueError:
        if report is not None:
            report.warning("bad_size", rel, f"{where} {column}", f"{text!r} is not a number; the real size is used")
        return None
    return value if value > 0 else None
