"""Import a folder or an archive of labelled images as a new dataset version.

Stages: ``extract`` (archives only, into the version's staging folder), ``read`` (parse the format), ``validate``
(every image and box; see :mod:`.validate`), ``write`` (split, shards, label map, manifest), ``publish`` (rename into
place). Every problem is collected in one :class:`ProblemReport`; fatal ones refuse the import after everything has
been read, so the report is complete. On any failure the staging folder goes, and the data folder is as it was.

TensorFlow is imported only in the ``write`` stage (and ``read`` for TFRecord sources).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.errors import InvalidInput
from services.store.datasets.annotations import DatasetKind, ImageAnnotation, SourceFormat
from services.store.datasets.archive import extract_archive, member_role
from services.store.datasets.csv_format import read_csv_files
from services.store.datasets.folders import read_folders
from services.store.datasets.manifest import Manifest, SourceInfo, SplitInfo
from services.store.datasets.paths import index_images, walk_files
from services.store.datasets.problems import ProblemReport
from services.store.datasets.request import ImportRequest
from services.store.datasets.split import split_ratios, stratified_split
from services.store.datasets.storage import DatasetStore, check_name
from services.store.datasets.validate import ValidImage, validate_images
from services.store.datasets.voc import read_voc_file
from services.training.datasets.writer import file_sha256, write_version
from services.vision.labelmap import LabelMap, load_label_map, parse_label_map

logger = logging.getLogger(__name__)

STAGES: dict[str, tuple[float, float]] = {
    "extract": (0.0, 15.0),
    "read": (15.0, 25.0),
    "validate": (25.0, 60.0),
    "write": (60.0, 97.0),
    "publish": (97.0, 100.0),
}
"""Each stage's share of the overall percent."""

POOL_SPLIT = "pool"


@dataclass(frozen=True, slots=True)
class Progress:
    """Where an import is: its stage, items done of the stage's total, and the overall percent."""

    stage: str
    done: int
    total: int

    @property
    def percent(self) -> float:
        start, end = STAGES[self.stage]
        fraction = self.done / self.total if self.total else 1.0
        return round(start + (end - start) * min(fraction, 1.0), 1)


ProgressFn = Callable[[Progress], None]


@dataclass(slots=True)
class ImportResult:
    """A published version, its manifest, and the problems report (also inside the manifest)."""

    manifest: Manifest
    path: Path
    problems: ProblemReport

    def to_dict(self) -> dict[str, Any]:
        """The job result's JSON: where the version is, its summary and table, and the whole problems report."""
        return {
            "dataset": self.manifest.name,
            "version": self.manifest.version,
            "path": str(self.path),
            "summary": self.manifest.summary(),
            "table": self.manifest.summary_rows(),
            "problems": self.problems.to_dict(),
        }


def import_dataset(
    request: ImportRequest, store: DatasetStore, progress: ProgressFn | None = None, *, token: str = ""
) -> ImportResult:
    """Import ``request.source`` as the next version of ``request.name``.

    Args:
        request: what to import.
        store: where versions go.
        progress: called as the import goes.
        token: names the staging folder (the job id), so a killed job's leftovers can be found.

    Raises:
        InvalidParameter: a bad name or split.
        InvalidInput: hostile or unusable input; ``details["problems"]`` holds the whole report when there is one.
        PayloadTooLarge: an archive past its limits.
        UnsupportedMediaType: a source file that is not a zip or tar.gz.
    """
    check_name(request.name)
    ratios = {POOL_SPLIT: 1.0} if request.pool else split_ratios(request.split, request.test_split)
    report = ProblemReport()

    def tick(stage: str) -> Callable[[int, int], None]:
        return lambda done, total: progress(Progress(stage, done, total)) if progress else None

    source = request.source
    if not source.exists():
        raise InvalidInput(f"{source} does not exist")
    with store.staging(request.name, token) as staging:
        root, files, archive_sha = _source_files(request, staging, report, tick("extract"))
        tick("extract")(1, 1)

        label_map = _label_map(request, root, files, report)
        annotations, kind = _read(request, root, files, label_map, staging / "spill", report)
        tick("read")(1, 1)
        report.raise_if_fatal("the import was refused")

        classes = set(label_map.names.values()) if label_map is not None else None
        valid = validate_images(
            annotations,
            report,
            kind=kind,
            classes=classes,
            reencode_dir=staging / "reencoded",
            max_pixels=request.max_pixels,
            on_image=tick("validate"),
        )
        if not valid:
            raise InvalidInput(
                f"no usable images ({len(annotations)} found, {len(report)} problems)",
                details={"problems": report.to_dict()},
            )
        if label_map is None:
            found = sorted({c for image in valid for c in image.classes()})
            if not found:
                raise InvalidInput("no image has a class", details={"problems": report.to_dict()})
            label_map = LabelMap.from_names(found)

        splits = _split(valid, ratios, request.seed)
        total = len(valid)
        written = [0]

        def on_record() -> None:
            written[0] += 1
            tick("write")(written[0], total)

        manifest, folder = _write(
            request, store, staging, kind, splits, label_map, ratios, archive_sha, report, on_record
        )
        tick("publish")(1, 1)
    logger.info(
        "imported dataset %s version %d: %d images, %d problems", manifest.name, manifest.version, total, len(report)
    )
    return ImportResult(manifest, folder, report)


def _source_files(
    request: ImportRequest, staging: Path, report: ProblemReport, on_file: Callable[[int, int], None]
) -> tuple[Path, list[Path], str | None]:
    """The folder the source's files are in, the files, and the archive's sha256 (``None`` for a folder): a folder is
    read in place (files of a type the import does not take are reported and ignored), an archive is extracted into
    the staging folder. The root is absolute: the data folder may be relative (the default ``data``), and every path
    found under the root is compared with it (``relative_to``), extracted files included (they are absolute)."""
    source = request.source
    if source.is_dir():
        root = source.resolve()
        files = walk_files(root)
        for path in files:
            rel = path.relative_to(root).as_posix()
            if member_role(request.format, rel) == "refused":
                report.warning("ignored_file", rel, "", "not a file type this import takes")
        return root, files, None
    root = (staging / "source").resolve()
    root.mkdir()
    archive_sha = file_sha256(source)
    return root, sorted(extract_archive(source, root, request.format, request.limits, on_file)), archive_sha


def _label_map(request: ImportRequest, root: Path, files: list[Path], report: ProblemReport) -> LabelMap | None:
    """The label map given, or the one ``.pbtxt`` in the source, or ``None`` (classes are numbered by name)."""
    in_source = [p for p in files if p.name.lower().endswith(".pbtxt")]
    if request.label_map is not None:
        for path in in_source:
            report.warning("label_map_ignored", path.relative_to(root).as_posix(), "", "the label map given is used")
        return load_label_map(request.label_map)
    if len(in_source) > 1:
        names = ", ".join(p.relative_to(root).as_posix() for p in in_source)
        report.fatal("several_label_maps", in_source[0].relative_to(root).as_posix(), "", f"which one? {names}")
        return None
    if in_source:
        rel = in_source[0].relative_to(root).as_posix()
        try:
            return parse_label_map(in_source[0].read_text(encoding="utf-8"), source=rel)
        except (InvalidInput, UnicodeDecodeError) as exc:
            report.fatal("bad_label_map", rel, "", getattr(exc, "message", str(exc)))
    return None


def _read(
    request: ImportRequest,
    root: Path,
    files: list[Path],
    label_map: LabelMap | None,
    spill: Path,
    report: ProblemReport,
) -> tuple[list[ImageAnnotation], DatasetKind]:
    fmt = request.format
    images = index_images(files)
    if fmt is SourceFormat.VOC:
        xmls = [p for p in files if p.suffix.lower() == ".xml"]
        if not xmls:
            report.fatal("no_annotations", ".", "", "no .xml annotation files")
        found = [read_voc_file(p, root, images, report) for p in xmls]
        return [a for a in found if a is not None], DatasetKind.DETECTION
    if fmt is SourceFormat.CSV:
        csvs = [p for p in files if p.suffix.lower() == ".csv"]
        if not csvs:
            report.fatal("no_annotations", ".", "", "no .csv annotation files")
        return read_csv_files(csvs, root, images, report), DatasetKind.DETECTION
    if fmt is SourceFormat.FOLDERS:
        kind = DatasetKind.POOL if request.pool else DatasetKind.CLASSIFICATION
        return read_folders(root, files, report, pool=request.pool), kind
    from services.store.datasets.archive import is_record_name
    from services.training.datasets.tfrecord import read_record_files  # TensorFlow: only for TFRecord sources

    records = [p for p in files if is_record_name(p.name)]
    if not records:
        report.fatal("no_records", ".", "", "no TFRecord files (.tfrecord, .record)")
    annotations = read_record_files(records, root, label_map, spill, report)
    if request.pool:
        return annotations, DatasetKind.POOL
    boxed = any(a.objects for a in annotations)
    return annotations, DatasetKind.DETECTION if boxed else DatasetKind.CLASSIFICATION


def _split(valid: list[ValidImage], ratios: dict[str, float], seed: int) -> dict[str, list[ValidImage]]:
    if list(ratios) == [POOL_SPLIT]:
        return {POOL_SPLIT: valid}
    assigned = stratified_split([image.classes() for image in valid], ratios, seed)
    splits: dict[str, list[ValidImage]] = {s: [] for s in ratios}
    for image, split in zip(valid, assigned, strict=True):
        splits[split].append(image)
    return splits


def _write(
    request: ImportRequest,
    store: DatasetStore,
    staging: Path,
    kind: DatasetKind,
    splits: dict[str, list[ValidImage]],
    label_map: LabelMap,
    ratios: dict[str, float],
    archive_sha: str | None,
    report: ProblemReport,
    on_record: Callable[[], None],
) -> tuple[Manifest, Path]:
    source = SourceInfo(
        format=request.format,
        archive=(request.archive_name or request.source.name) if archive_sha is not None else None,
        archive_sha256=archive_sha,
        label_map=request.label_map.name if request.label_map else None,
    )
    return write_version(
        store,
        staging,
        name=request.name,
        kind=kind,
        splits=splits,
        label_map=label_map,
        source=source,
        split_info=SplitInfo(ratios=ratios, seed=request.seed),
        problems=report,
        on_record=on_record,
    )
