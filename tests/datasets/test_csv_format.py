"""CSV annotations (``filename,width,height,class,xmin,ymin,xmax,ymax``): rows grouped per image, problems per row."""

from __future__ import annotations

from pathlib import Path

from services.store.datasets.csv_format import read_csv_files
from services.store.datasets.paths import index_images, walk_files
from services.store.datasets.problems import ProblemReport, Severity
from services.vision.boxes import Box
from tests.datasets.fixtures import scenes, write_csv, write_csv_dataset


def _read(root: Path) -> tuple[list, ProblemReport]:
    report = ProblemReport()
    files = walk_files(root)
    csvs = [p for p in files if p.suffix == ".csv"]
    return read_csv_files(csvs, root, index_images(files), report), report


def test_rows_become_one_annotation_per_image(tmp_path: Path) -> None:
    items = scenes(count=5)
    rows = write_csv_dataset(tmp_path, items)
    annotations, report = _read(tmp_path)
    assert len(report) == 0
    assert len(annotations) == 5
    for ann, scene in zip(annotations, items, strict=True):
        assert [(o.label, o.box) for o in ann.objects] == [(o.label, o.box) for o in scene.objects]
    assert sum(len(a.objects) for a in annotations) == len(rows)


def test_columns_by_name_extra_columns_and_background_rows(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    for name in ("a.jpg", "b.jpg"):
        scenes(count=1)[0].image.save(tmp_path / "img" / name)
    (tmp_path / "labels.csv").write_text(
        "class,xmin,ymin,xmax,ymax,filename,width,height,note\n"
        "cat,1,2,30,40,a.jpg,112,112,first\n"
        ",,,,,b.jpg,112,112,no objects\n"
    )
    annotations, report = _read(tmp_path)
    assert len(report) == 0
    a, b = annotations
    assert a.objects[0].box == Box(1, 2, 30, 40) and a.filename == "img/a.jpg"
    assert b.objects == [] and b.filename == "img/b.jpg"


def test_every_bad_row_is_reported_with_its_row_number(tmp_path: Path) -> None:
    items = scenes(count=2)
    write_csv_dataset(tmp_path, items)
    rows = [
        ["scene_000.jpg", "112", "112", "circle", "1", "2", "30", "40"],  # row 2
        ["scene_000.jpg", "112", "112", "circle", "1", "2", "30", "40"],  # row 3: duplicate of row 2
        ["scene_001.jpg", "112", "112", "square", "a", "2", "30", "40"],  # row 4: not a number
        ["missing.jpg", "112", "112", "circle", "1", "2", "30", "40"],  # row 5: no such image
        ["scene_001.jpg", "112", "112", "", "1", "2", "30", "40"],  # row 6: box without class
        ["scene_001.jpg", "112"],  # row 7: short
    ]
    write_csv(tmp_path / "labels.csv", rows)
    annotations, report = _read(tmp_path)
    found = [(p.severity, p.code, p.file, p.where) for p in report.problems]
    assert found == [
        (Severity.WARNING, "duplicate_row", "labels.csv", "row 3"),
        (Severity.ERROR, "bad_box", "labels.csv", "row 4"),
        (Severity.ERROR, "missing_image", "labels.csv", "row 5"),
        (Severity.ERROR, "missing_class", "labels.csv", "row 6"),
        (Severity.ERROR, "csv_short_row", "labels.csv", "row 7"),
    ]
    # scene_001's rows were all rejected: it is kept with its rejected count, so validation drops it with a problem
    assert [(a.filename, len(a.objects), a.rejected) for a in annotations] == [
        ("images/scene_000.jpg", 1, 0),
        ("images/scene_001.jpg", 0, 2),
    ]


def test_a_csv_without_the_columns_is_fatal(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("image,label\na.jpg,cat\n")
    _, report = _read(tmp_path)
    [problem] = report.problems
    assert problem.severity is Severity.FATAL and "filename" in problem.message


def test_several_csv_files_are_read_together(tmp_path: Path) -> None:
    items = scenes(count=4)
    write_csv_dataset(tmp_path, items[:2], csv_name="train_labels.csv")
    write_csv_dataset(tmp_path / "more", items[2:], csv_name="test_labels.csv")
    annotations, report = _read(tmp_path)
    assert len(report) == 0 and len(annotations) == 4
