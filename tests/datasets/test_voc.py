"""Pascal VOC: LabelImg's files read and written; XML with entities, DTDs or external references refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.errors import InvalidInput
from services.store.datasets.annotations import ObjectAnnotation, SourceFormat
from services.store.datasets.paths import index_images, walk_files
from services.store.datasets.problems import ProblemReport, Severity
from services.store.datasets.request import ImportRequest
from services.store.datasets.storage import DatasetStore
from services.store.datasets.voc import read_voc_file, voc_xml, write_voc
from services.training.datasets.importer import import_dataset
from services.vision.boxes import Box
from tests.datasets.fixtures import scenes, tree, write_voc_dataset

LABELIMG = b"""<annotation>
\t<folder>images</folder>
\t<filename>a.jpg</filename>
\t<path>C:\\Users\\me\\images\\a.jpg</path>
\t<source><database>Unknown</database></source>
\t<size><width>112</width><height>112</height><depth>3</depth></size>
\t<segmented>0</segmented>
\t<object>
\t\t<name>raccoon</name><pose>Left</pose><truncated>1</truncated><difficult>0</difficult>
\t\t<bndbox><xmin>10</xmin><ymin>12</ymin><xmax>50</xmax><ymax>60</ymax></bndbox>
\t</object>
\t<object>
\t\t<name>raccoon</name><pose>Unspecified</pose><truncated>0</truncated><difficult>1</difficult>
\t\t<bndbox><xmin>60.5</xmin><ymin>20</ymin><xmax>100</xmax><ymax>90</ymax></bndbox>
\t</object>
</annotation>
"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<annotation><filename>a.jpg</filename><object><name>&lol4;</name></object></annotation>
"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE annotation [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<annotation><filename>a.jpg</filename><object><name>&xxe;</name></object></annotation>
"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE annotation SYSTEM "http://127.0.0.1:1/evil.dtd">
<annotation><filename>a.jpg</filename></annotation>
"""


def _image(folder: Path, name: str = "a.jpg") -> Path:
    scenes(count=1)[0].image.save(folder / name, format="JPEG")
    return folder / name


def _read(folder: Path, xml: str) -> tuple[object, ProblemReport]:
    report = ProblemReport()
    files = walk_files(folder)
    return read_voc_file(folder / xml, folder, index_images(files), report), report


def test_labelimg_file_reads_with_its_flags(tmp_path: Path) -> None:
    _image(tmp_path)
    (tmp_path / "a.xml").write_bytes(LABELIMG)
    ann, report = _read(tmp_path, "a.xml")
    assert len(report) == 0
    assert ann.filename == "a.jpg" and (ann.width, ann.height) == (112, 112)
    first, second = ann.objects
    assert (first.label, first.box, first.truncated, first.difficult, first.view) == (
        "raccoon",
        Box(10, 12, 50, 60),
        True,
        False,
        "Left",
    )
    assert second.box == Box(60.5, 20, 100, 90) and second.difficult


@pytest.mark.parametrize("payload", [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD], ids=["laughs", "xxe", "dtd"])
def test_entities_and_dtds_are_refused_per_file(payload: bytes, tmp_path: Path) -> None:
    _image(tmp_path)
    (tmp_path / "a.xml").write_bytes(payload)
    ann, report = _read(tmp_path, "a.xml")
    assert ann is None
    [problem] = report.problems
    assert (problem.severity, problem.code, problem.file) == (Severity.FATAL, "xml_forbidden", "a.xml")


def test_a_hostile_xml_refuses_the_import_and_names_every_bad_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_voc_dataset(src, scenes(count=4))
    (src / "annotations" / "scene_001.xml").write_bytes(BILLION_LAUGHS)
    (src / "annotations" / "scene_002.xml").write_bytes(EXTERNAL_ENTITY)
    data = tmp_path / "data"
    with pytest.raises(InvalidInput) as refused:
        import_dataset(ImportRequest(name="x", format=SourceFormat.VOC, source=src), DatasetStore(data))
    assert "refused" in refused.value.message and "1 more" in refused.value.message
    problems = refused.value.details["problems"]["problems"]
    assert {p["file"] for p in problems if p["code"] == "xml_forbidden"} == {
        "annotations/scene_001.xml",
        "annotations/scene_002.xml",
    }
    assert tree(data) == []


def test_malformed_and_foreign_xml_are_errors_not_crashes(tmp_path: Path) -> None:
    _image(tmp_path)
    (tmp_path / "a.xml").write_bytes(b"<annotation><filename>a.jpg</filename>")
    (tmp_path / "b.xml").write_bytes(b"<html/>")
    assert _read(tmp_path, "a.xml")[1].problems[0].code == "xml_malformed"
    assert _read(tmp_path, "b.xml")[1].problems[0].code == "xml_not_voc"


def test_bad_objects_are_reported_with_their_element(tmp_path: Path) -> None:
    _image(tmp_path)
    (tmp_path / "a.xml").write_bytes(
        b"<annotation><filename>a.jpg</filename>"
        b"<object><name>cat</name><bndbox><xmin>x</xmin><ymin>1</ymin><xmax>2</xmax><ymax>3</ymax></bndbox></object>"
        b"<object><name></name></object>"
        b"<object><name>dog</name></object>"
        b"</annotation>"
    )
    ann, report = _read(tmp_path, "a.xml")
    assert ann.objects == []
    assert [(p.code, p.where) for p in report.problems] == [
        ("bad_box", "object[1] 'cat' <xmin>"),
        ("missing_class", "object[2]"),
        ("missing_box", "object[3] 'dog'"),
    ]


def test_images_are_found_beside_the_xml_or_by_name_never_by_absolute_path(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "annotations").mkdir()
    _image(tmp_path / "images", "a.jpg")
    (tmp_path / "annotations" / "a.xml").write_bytes(LABELIMG)
    ann, report = _read(tmp_path, "annotations/a.xml")
    assert ann.path == tmp_path / "images" / "a.jpg"
    (tmp_path / "annotations" / "b.xml").write_bytes(LABELIMG.replace(b"a.jpg", b"../../../etc/passwd"))
    ann, report = _read(tmp_path, "annotations/b.xml")
    assert ann is None and report.problems[0].code == "missing_image"


def test_the_writer_round_trips_through_the_reader(tmp_path: Path) -> None:
    _image(tmp_path)
    objects = [
        ObjectAnnotation("circle", Box(3, 4, 30, 40)),
        ObjectAnnotation("cross", Box(50, 51, 90, 99), truncated=True, difficult=True, view="Frontal"),
    ]
    write_voc(tmp_path / "a.xml", "a.jpg", 112, 112, objects, folder="images")
    ann, report = _read(tmp_path, "a.xml")
    assert len(report) == 0
    assert [(o.label, o.box, o.truncated, o.difficult, o.view) for o in ann.objects] == [
        ("circle", Box(3, 4, 30, 40), False, False, "Unspecified"),
        ("cross", Box(50, 51, 90, 99), True, True, "Frontal"),
    ]
    text = voc_xml("a.jpg", 112, 112, objects).decode()
    assert "<xmin>3</xmin>" in text and "<depth>3</depth>" in text  # whole pixels, as LabelImg keeps them
