"""The hostile dataset corpus (``tests/data/hostile/datasets/``): every case's problems are listed, in order, each
naming its file and what is wrong, and only the images that should survive do (issue 11 item 5, issue 12 item 5).

Readers and validation run as the import runs them (TensorFlow-free); the archive cases go through the upload
check the gateway runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.errors import InvalidInput
from services.settings import ArchiveLimits
from services.store.datasets.annotations import DatasetKind, ImageAnnotation, SourceFormat
from services.store.datasets.archive import check_archive
from services.store.datasets.csv_format import read_csv_files
from services.store.datasets.paths import index_images, walk_files
from services.store.datasets.problems import ProblemReport
from services.store.datasets.validate import ValidImage, validate_images
from services.store.datasets.voc import read_voc_file
from tests.datasets.hostile import Case, archive_cases, build_archive, build_case, dataset_cases, entry_name

CASES = dataset_cases()


def read_and_validate(root: Path, fmt: str, scratch: Path) -> tuple[list[ValidImage], ProblemReport]:
    """What the import's ``read`` and ``validate`` stages do with a folder (the ``write`` stage needs TensorFlow)."""
    report = ProblemReport()
    files = walk_files(root)
    images = index_images(files)
    annotations: list[ImageAnnotation]
    if fmt == SourceFormat.VOC:
        found = [read_voc_file(p, root, images, report) for p in files if p.suffix == ".xml"]
        annotations = [a for a in found if a is not None]
    else:
        annotations = read_csv_files([p for p in files if p.suffix == ".csv"], root, images, report)
    valid = validate_images(annotations, report, kind=DatasetKind.DETECTION, classes=None, reencode_dir=scratch)
    return valid, report


def test_the_corpus_is_there() -> None:
    assert len(CASES) >= 10 and {c.format for c in CASES} == {"voc", "csv"}
    assert len(archive_cases()) >= 4


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_bad_thing_is_a_listed_problem_naming_the_file(case: Case, tmp_path: Path) -> None:
    root = build_case(case, tmp_path / "dataset").resolve()
    valid, report = read_and_validate(root, case.format, tmp_path / "scratch")
    expected = case.spec["problems"]
    found = report.problems
    assert [(p.severity, p.code, p.file) for p in found] == [(e["severity"], e["code"], e["file"]) for e in expected], [
        p.to_dict() for p in found
    ]
    for problem, want in zip(found, expected, strict=True):
        if "where" in want:
            assert problem.where == want["where"], problem
        for phrase in want["message_has"]:
            assert phrase in problem.message, (phrase, problem)
        assert str(tmp_path) not in problem.message  # relative to the import's root: no server path
    assert {v.filename: len(v.objects) for v in valid} == case.spec["kept"]
    for image in valid:  # nothing that is not a finite, ordered box got through
        for obj in image.objects:
            box = obj.box
            assert 0 <= box.xmin < box.xmax <= image.width and 0 <= box.ymin < box.ymax <= image.height
    names = {o.label for v in valid for o in v.objects}
    assert all(name.isprintable() for name in names)


@pytest.mark.parametrize("case", archive_cases(), ids=[c["name"] for c in archive_cases()])
def test_an_entry_name_too_long_for_the_file_system_is_refused_at_the_upload_check(case: dict, tmp_path: Path) -> None:
    archive = build_archive(case, tmp_path / "upload.zip")
    with pytest.raises(InvalidInput) as caught:
        check_archive(archive, SourceFormat.VOC, ArchiveLimits())
    assert case["reason"] in caught.value.message
    [refused] = caught.value.details["refused"]
    assert refused["reason"] == case["reason"]
    assert len(refused["member"]) < len(entry_name(case["entries"][0]))  # shortened in the answer
    assert str(tmp_path) not in caught.value.message


def test_a_tar_entry_name_too_long_is_refused_the_same_way(tmp_path: Path) -> None:
    """tar.gz archives carry long names in PAX headers: the same listing check refuses them."""
    import tarfile

    case = archive_cases()[0]
    image = tmp_path / "street.jpg"
    build_case(CASES[0], tmp_path / "ds")
    image.write_bytes(next((tmp_path / "ds" / "images").iterdir()).read_bytes())
    archive = tmp_path / "upload.tar.gz"
    with tarfile.open(archive, "w:gz", format=tarfile.PAX_FORMAT) as tf:
        tf.add(image, entry_name(case["entries"][0]))
    with pytest.raises(InvalidInput, match=case["reason"]):
        check_archive(archive, SourceFormat.VOC, ArchiveLimits())
