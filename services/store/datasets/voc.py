"""Pascal VOC XML as LabelImg reads and writes it: one file per image, boxes in pixels.

Reading goes through defusedxml with DTDs, entities and external references forbidden, so a billion-laughs or
external-entity file is refused (a fatal problem naming the file) before anything is expanded or fetched. Writing
(used for review lists that people correct in LabelImg) uses the standard library's serializer, which is safe.

Numbers are read strictly (:func:`~.annotations.parse_number`: no ``nan``, ``inf`` or ``4_0``); an object with a bad
number, no ``<name>`` or no ``<bndbox>`` is rejected, and an image whose objects were all rejected is dropped (by
:mod:`.validate`), never kept as a background image. Coordinates are taken as pixels exactly as written, like the
TF Object Detection API's own VOC converter does (no one-pixel offset): LabelImg writes what it shows.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from services.files import atomic_write
from services.store.datasets.annotations import ImageAnnotation, ObjectAnnotation, parse_number
from services.store.datasets.paths import IMAGE_SUFFIXES, AmbiguousImage, find_image
from services.store.datasets.problems import ProblemReport
from services.vision.boxes import Box

MAX_XML_BYTES = 1 << 20
"""A LabelImg file is a few kilobytes; anything past this is not an annotation file."""


def read_voc_file(
    xml_path: Path, root: Path, images: dict[str, list[Path]], report: ProblemReport
) -> ImageAnnotation | None:
    """Read one VOC XML file; problems go to ``report``; ``None`` when the file is unusable.

    Args:
        xml_path: the XML file, inside ``root``.
        root: the import's root folder: images are only ever looked for inside it (the ``<path>`` element, an
            absolute path on the annotator's machine, is never opened).
        images: every image under ``root`` by lower-cased file name, to find images kept in another folder.
        report: where problems go.
    """
    rel = xml_path.relative_to(root).as_posix()
    data = xml_path.read_bytes()
    if len(data) > MAX_XML_BYTES:
        report.error("xml_too_large", rel, "", f"{len(data)} bytes; an annotation file is at most {MAX_XML_BYTES}")
        return None
    try:
        element = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        report.fatal(
            "xml_forbidden",
            rel,
            "",
            f"refused: {type(exc).__name__} (DTDs, entities and external references are not allowed)",
        )
        return None
    except ET.ParseError as exc:
        report.error("xml_malformed", rel, f"line {exc.position[0]}", f"not well-formed XML: {exc}")
        return None
    if element.tag != "annotation":
        report.error("xml_not_voc", rel, f"<{element.tag}>", "the root element is not <annotation>")
        return None

    filename = (element.findtext("filename") or "").strip()
    shown = filename or f"{xml_path.stem}.*"
    try:
        image_path = _find_image(xml_path, filename, root, images)
    except AmbiguousImage as exc:
        image_path = None
        report.error("ambiguous_image", rel, "<filename>", exc.describe(shown, root))
    else:
        if image_path is None:
            report.error("missing_image", rel, "<filename>", f"image {shown!r} not found in the archive")
    width = _declared_int(element, "size/width", rel, report)
    height = _declared_int(element, "size/height", rel, report)

    objects: list[ObjectAnnotation] = []
    rejected = 0
    for index, obj in enumerate(element.iterfind("object"), start=1):
        parsed = _read_object(obj, index, rel, report)
        if parsed is not None:
            objects.append(parsed)
        else:
            rejected += 1
    if image_path is None:
        return None
    return ImageAnnotation(
        filename=image_path.relative_to(root).as_posix(),
        path=image_path,
        source=rel,
        width=width,
        height=height,
        objects=objects,
        rejected=rejected,
    )


def _find_image(xml_path: Path, filename: str, root: Path, images: dict[str, list[Path]]) -> Path | None:
    """The image a VOC file names (beside the XML, then under ``root``); by the XML's own name if it names none."""
    candidates = [filename] if filename else [xml_path.stem + suffix for suffix in IMAGE_SUFFIXES]
    for candidate in candidates:
        found = find_image(candidate, xml_path.parent, root, images)
        if found is not None:
            return found
    return None


def _declared_int(element: ET.Element, path: str, rel: str, report: ProblemReport) -> int | None:
    text = (element.findtext(path) or "").strip()
    if not text:
        return None
    try:
        value = int(parse_number(text))
    except ValueError:
        report.warning("bad_size", rel, f"<{path}>", f"{text!r} is not a number; the image's real size is used")
        return None
    return value if value > 0 else None


def _read_object(obj: ET.Element, index: int, rel: str, report: ProblemReport) -> ObjectAnnotation | None:
    name = (obj.findtext("name") or "").strip()
    where = f"object[{index}]" + (f" {name!r}" if name else "")
    if not name:
        report.error("missing_class", rel, where, "the object has no <name>; it is rejected")
        return None
    bndbox = obj.find("bndbox")
    if bndbox is None:
        report.error("missing_box", rel, where, "the object has no <bndbox>; it is rejected")
        return None
    coords: list[float] = []
    for tag in ("xmin", "ymin", "xmax", "ymax"):
        text = (bndbox.findtext(tag) or "").strip()
        try:
            coords.append(parse_number(text))
        except ValueError:
            report.error("bad_box", rel, f"{where} <{tag}>", f"{text!r} is not a number; the object is rejected")
            return None
    return ObjectAnnotation(
        label=name,
        box=Box(*coords),
        where=where,
        truncated=_flag(obj.findtext("truncated")),
        difficult=_flag(obj.findtext("difficult")),
        view=(obj.findtext("pose") or "").strip(),
    )


def _flag(text: str | None) -> bool:
    try:
        return int(parse_number((text or "0").strip() or "0")) != 0
    except ValueError:
        return False


def voc_xml(
    filename: str,
    width: int,
    height: int,
    objects: Iterable[ObjectAnnotation],
    *,
    folder: str = "",
    path: str = "",
    depth: int = 3,
) -> bytes:
    """A LabelImg-compatible VOC document for one image (boxes rounded to whole pixels, as LabelImg keeps them)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = folder
    ET.SubElement(root, "filename").text = filename
    ET.SubElement(root, "path").text = path or filename
    source = ET.SubElement(root, "source")
    ET.SubElement(source, "database").text = "Unknown"
    size = ET.SubElement(root, "size")
    ET.SubElement(size, "width").text = str(width)
    ET.SubElement(size, "height").text = str(height)
    ET.SubElement(size, "depth").text = str(depth)
    ET.SubElement(root, "segmented").text = "0"
    for obj in objects:
        element = ET.SubElement(root, "object")
        ET.SubElement(element, "name").text = obj.label
        ET.SubElement(element, "pose").text = obj.view or "Unspecified"
        ET.SubElement(element, "truncated").text = "1" if obj.truncated else "0"
        ET.SubElement(element, "difficult").text = "1" if obj.difficult else "0"
        bndbox = ET.SubElement(element, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), obj.box.as_tuple(), strict=True):
            ET.SubElement(bndbox, tag).text = str(round(value))
    ET.indent(root, space="\t")
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=False)
    return data + b"\n"


def write_voc(
    xml_path: Path,
    filename: str,
    width: int,
    height: int,
    objects: Sequence[ObjectAnnotation],
    *,
    folder: str = "",
    path: str = "",
) -> None:
    """Write :func:`voc_xml` to ``xml_path`` (aside, then renamed, so a reader never sees half a file)."""
    atomic_write(xml_path, voc_xml(filename, width, height, objects, folder=folder, path=path))
