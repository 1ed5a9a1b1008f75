"""Check every image and box against the real image, fix what can be fixed, and report the rest.

Rules (each problem names its file and row or element):

- an image that is missing, not an image, truncated or too large is dropped (error);
- a declared width/height that differs from the real image: the real size is used (warning);
- a box with a coordinate that is not a finite number (``nan``, ``inf``: the readers refuse them already, this
  catches TFRecord sources) is rejected (error);
- a class name with a control character (a NUL byte...), empty or over 128 characters is rejected (error);
- a box with ``xmax < xmin`` or ``ymax < ymin`` is inverted, one with zero width or height is empty: rejected (error);
- a box partly outside the image is clipped to it (warning) if at least half of it is inside, else rejected (error);
- a class that is not in the given label map: the box (or image-level label) is rejected (error);
- an image whose boxes were all rejected (here, or by the reader: no ``<name>``, no ``<bndbox>``, a bad number) is
  dropped (error), so it never teaches the model that its objects are background; an image that never had boxes is
  kept as a background image;
- the same image content twice (sha256) keeps the first one (warning), so no image lands in two splits.

JPEG and PNG files are stored byte for byte. Anything else Pillow can read (a GIF named ``.jpg``, a CMYK JPEG, a
16-bit PNG) is re-encoded as an 8-bit RGB PNG (warning), because TensorFlow's decoders and the TF OD API expect that.
Pillow only, no TensorFlow.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from services.store.datasets.annotations import (
    DatasetKind,
    ImageAnnotation,
    ObjectAnnotation,
    class_name_problem,
)
from services.store.datasets.problems import ProblemReport
from services.vision.boxes import Box
from services.vision.images import to_rgb

MAX_IMAGE_BYTES = 64 << 20
DEFAULT_MAX_PIXELS = 50_000_000
MIN_INSIDE_FRACTION = 0.5

_KEEP_MODES = {"JPEG": {"RGB", "L"}, "PNG": {"RGB", "RGBA", "L", "LA", "P"}}


@dataclass(slots=True)
class ValidImage:
    """An image that passed validation: real size, the encoded bytes' file and format, its boxes in pixels."""

    filename: str
    path: Path
    width: int
    height: int
    format: str  # "jpeg" or "png"
    sha256: str
    objects: list[ObjectAnnotation] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    data: bytes | None = None  # the encoded bytes when they are held in memory instead of at ``path``

    def classes(self) -> set[str]:
        return {o.label for o in self.objects} | set(self.labels)

    def encoded(self) -> bytes:
        """The JPEG or PNG bytes that go into ``image/encoded``."""
        return self.data if self.data is not None else self.path.read_bytes()


class ImageProblem(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class _Inspected:
    width: int
    height: int
    format: str
    data: bytes | None  # re-encoded bytes, or None when the file is kept as it is


def inspect_image(source: Path | bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> _Inspected:
    """Open and fully decode an image (a file or bytes); its real size, its format, and re-encoded bytes when it must
    be re-encoded.

    Raises:
        ImageProblem: not readable as an image, truncated, or over the byte or pixel limit.
    """
    size = len(source) if isinstance(source, bytes) else source.stat().st_size
    if size > MAX_IMAGE_BYTES:
        raise ImageProblem("image_too_large", f"{size} bytes; at most {MAX_IMAGE_BYTES} per image")
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageProblem("image_too_large", f"{width}x{height} pixels; at most {max_pixels}")
            image.load()  # a full decode: a truncated file fails here, not in training
            fmt = image.format or ""
            if image.mode in _KEEP_MODES.get(fmt, set()):
                return _Inspected(width, height, fmt.lower(), None)
            out = io.BytesIO()
            to_rgb(image).save(out, format="PNG")  # as the gateway decodes: 16-bit grey by its high byte
            return _Inspected(width, height, "png", out.getvalue())
    except UnidentifiedImageError as exc:
        raise ImageProblem("not_an_image", "not a JPEG or PNG image") from exc
    except Image.DecompressionBombError as exc:
        raise ImageProblem("image_too_large", str(exc)) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageProblem("unreadable_image", f"the image can't be decoded: {exc}") from exc


def valid_image_from_bytes(
    filename: str,
    data: bytes,
    objects: Sequence[ObjectAnnotation] = (),
    labels: Sequence[str] = (),
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ValidImage:
    """A :class:`ValidImage` held in memory (active learning's accepted examples, a derived version's images): the
    image is decoded to check it, re-encoded if it must be, and its boxes are clipped to it.

    Raises:
        ImageProblem: the bytes are not a usable image, or a box is inverted, empty or mostly outside.
    """
    info = inspect_image(data, max_pixels)
    encoded = info.data if info.data is not None else data
    kept = []
    for obj in objects:
        box, code, message = check_box(obj, info.width, info.height)
        if box is None:
            raise ImageProblem(code, f"{filename}: {message}")
        kept.append(ObjectAnnotation(obj.label, box, obj.where, obj.truncated, obj.difficult, obj.view))
    image_labels = list(labels) if labels else sorted({o.label for o in kept})
    digest = hashlib.sha256(encoded).hexdigest()
    return ValidImage(
        filename, Path(filename), info.width, info.height, info.format, digest, kept, image_labels, data=encoded
    )


def check_box(obj: ObjectAnnotation, width: int, height: int) -> tuple[Box | None, str, str]:
    """The box to keep (clipped), or ``None``; and a problem code and message ("" when the box is fine)."""
    box = obj.box
    if not all(math.isfinite(v) for v in box.as_tuple()):
        return None, "bad_box", f"box {_fmt(box)} has a coordinate that is not a finite number"
    if box.xmax < box.xmin or box.ymax < box.ymin:
        return None, "box_inverted", f"inverted box {_fmt(box)} (max below min)"
    if box.xmax == box.xmin or box.ymax == box.ymin:
        return None, "box_empty", f"zero-area box {_fmt(box)}"
    clipped = box.clip(width, height)
    if clipped == box:
        return box, "", ""
    if clipped.area < MIN_INSIDE_FRACTION * box.area:
        return None, "box_outside", f"box {_fmt(box)} lies mostly outside the {width}x{height} image"
    return clipped, "box_clipped", f"box {_fmt(box)} clipped to the {width}x{height} image: {_fmt(clipped)}"


def _fmt(box: Box) -> str:
    return "(" + ", ".join(f"{v:g}" for v in box.as_tuple()) + ")"


def validate_images(
    annotations: list[ImageAnnotation],
    report: ProblemReport,
    *,
    kind: DatasetKind,
    classes: Collection[str] | None,
    reencode_dir: Path,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    on_image: Callable[[int, int], None] | None = None,
) -> list[ValidImage]:
    """Validate every image and box (see the module's text); the images to keep, in the order given.

    Args:
        annotations: what the readers found.
        report: where problems go.
        kind: detection images keep boxes; classification and pool images keep image-level labels.
        classes: the label map's class names, or ``None`` to take every class found.
        reencode_dir: where re-encoded images are written (inside the import's staging folder).
        max_pixels: images with more pixels are dropped.
        on_image: called with (done, total) after each image.
    """
    kept: list[ValidImage] = []
    seen: dict[str, str] = {}
    for done, ann in enumerate(annotations, start=1):
        valid = _validate_one(ann, report, kind, classes, reencode_dir, max_pixels, seen)
        if valid is not None:
            kept.append(valid)
        if on_image:
            on_image(done, len(annotations))
    return kept


def _validate_one(
    ann: ImageAnnotation,
    report: ProblemReport,
    kind: DatasetKind,
    classes: Collection[str] | None,
    reencode_dir: Path,
    max_pixels: int,
    seen: dict[str, str],
) -> ValidImage | None:
    if ann.path is None:
        return None
    try:
        info = inspect_image(ann.path, max_pixels)
    except ImageProblem as exc:
        report.error(exc.code, ann.filename, "", exc.message)
        return None
    path = ann.path
    if info.data is not None:
        digest = hashlib.sha256(info.data).hexdigest()
        path = reencode_dir / f"{digest}.png"
        reencode_dir.mkdir(parents=True, exist_ok=True)
        path.write_bytes(info.data)
        report.warning("reencoded", ann.filename, "", "stored as PNG (it was not an 8-bit JPEG or PNG)")
    else:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest in seen:
        report.warning("duplicate_image", ann.filename, "", f"same content as {seen[digest]}; dropped")
        return None
    seen[digest] = ann.filename

    declared = (ann.width, ann.height)
    if any(d is not None for d in declared) and declared != (info.width, info.height):
        shown = "x".join("?" if d is None else str(d) for d in declared)
        report.warning(
            "size_mismatch",
            ann.source,
            ann.where or "<size>",
            f"{ann.filename}: declared size {shown} differs from the image's real {info.width}x{info.height}; "
            "the real size is used",
        )

    objects: list[ObjectAnnotation] = []
    for obj in ann.objects:
        refused = class_name_problem(obj.label)
        if refused:
            report.error("bad_class_name", ann.source, obj.where, f"{ann.filename}: {refused}; the box is rejected")
            continue
        if classes is not None and obj.label not in classes:
            report.error("unknown_class", ann.source, obj.where, f"class {obj.label!r} is not in the label map")
            continue
        box, code, message = check_box(obj, info.width, info.height)
        if code:
            (report.warning if box is not None else report.error)(code, ann.source, obj.where, message)
        if box is not None:
            objects.append(ObjectAnnotation(obj.label, box, obj.where, obj.truncated, obj.difficult, obj.view))
    if (ann.objects or ann.rejected) and not objects:
        report.error(
            "no_valid_boxes", ann.source, ann.where, f"every object of {ann.filename} was rejected; image dropped"
        )
        return None

    labels = []
    for label in ann.labels:
        refused = class_name_problem(label)
        if refused:
            report.error("bad_class_name", ann.source, ann.where, f"{ann.filename}: {refused}; the label is rejected")
        elif classes is not None and label not in classes:
            report.error("unknown_class", ann.source, ann.where, f"class {label!r} is not in the label map")
        else:
            labels.append(label)
    if kind is DatasetKind.CLASSIFICATION and not labels:
        return None
    if kind is DatasetKind.DETECTION:
        labels = sorted({o.label for o in objects})
    return ValidImage(ann.filename, path, info.width, info.height, info.format, digest, objects, labels)
