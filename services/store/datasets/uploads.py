"""Uploaded archives waiting for their import job: ``<data_dir>/uploads/<id>/`` holds ``archive`` and, when one was
sent, ``label_map.pbtxt``. The id is also the import job's id, so the worker removes the folder when the job ends.

:func:`prepare_import` turns an upload's form fields into an :class:`ImportRequest` and checks everything that can be
checked at once (parameters, the archive's listing, the label map), so a bad upload is refused before it is queued.
No TensorFlow (the gateway uses this).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from services.errors import InvalidInput, InvalidParameter
from services.files import fresh_dir
from services.settings import ArchiveLimits
from services.store.datasets.annotations import SourceFormat
from services.store.datasets.archive import check_archive
from services.store.datasets.request import ImportRequest
from services.store.datasets.split import split_ratios
from services.store.datasets.storage import check_name
from services.vision.labelmap import parse_label_map

UPLOADS = "uploads"
ARCHIVE_FILE = "archive"
LABEL_MAP_FILE = "label_map.pbtxt"
MAX_LABEL_MAP_BYTES = 1 << 20


def new_upload_id() -> str:
    """A fresh id (RQ job ids allow letters, digits, ``-`` and ``_``)."""
    return uuid.uuid4().hex


@contextmanager
def upload_folder(data_dir: Path, upload_id: str) -> Iterator[Path]:
    """Create ``uploads/<id>/``; if the block fails, remove it and the folders it created (the data folder is left
    as it was). On success the folder stays for the import job."""
    with fresh_dir(data_dir / UPLOADS / upload_id) as folder:
        yield folder


def _float(fields: Mapping[str, str], key: str, default: float) -> float:
    text = fields.get(key, "").strip()
    if not text:
        return default
    try:
        return float(text)
    except ValueError:
        raise InvalidParameter(f"{key} must be a number, not {text!r}") from None


def prepare_import(
    data_dir: Path,
    upload_id: str,
    fields: Mapping[str, str],
    *,
    archive_name: str | None,
    limits: ArchiveLimits,
) -> ImportRequest:
    """Check an upload's fields (``name``, ``format``, ``split``, ``test_split``, ``seed``, ``pool``), its archive's
    listing and its label map; the import request, with paths relative to ``data_dir``.

    Raises:
        InvalidParameter: a missing or bad field (422).
        InvalidInput, PayloadTooLarge, UnsupportedMediaType: the archive or label map is refused (400, 413, 415).
    """
    if not fields.get("name", "").strip():
        raise InvalidParameter("name is required: the dataset's name")
    name = check_name(fields["name"].strip())
    fmt_text = fields.get("format", "").strip().lower()
    try:
        fmt = SourceFormat(fmt_text)
    except ValueError:
        choices = "|".join(f.value for f in SourceFormat)
        raise InvalidParameter(f"format must be one of {choices}, not {fmt_text!r}") from None
    split = _float(fields, "split", 0.8)
    test_split = _float(fields, "test_split", 0.0)
    seed_text = fields.get("seed", "").strip() or "0"
    try:
        seed = int(seed_text)
    except ValueError:
        raise InvalidParameter(f"seed must be an integer, not {seed_text!r}") from None
    pool = fields.get("pool", "").strip().lower() in ("1", "true", "yes", "on")
    if not pool:
        split_ratios(split, test_split)

    folder = data_dir / UPLOADS / upload_id
    archive = folder / ARCHIVE_FILE
    if not archive.is_file() or archive.stat().st_size == 0:
        raise InvalidInput("no archive: send a zip or tar.gz as the multipart field 'file'")
    check_archive(archive, fmt, limits)
    label_map = folder / LABEL_MAP_FILE
    if label_map.exists():
        try:
            parse_label_map(label_map.read_text(encoding="utf-8"), source="label_map")
        except UnicodeDecodeError:
            raise InvalidInput("label_map: not UTF-8 text") from None
    return ImportRequest(
        name=name,
        format=fmt,
        source=Path(UPLOADS) / upload_id / ARCHIVE_FILE,
        split=split,
        test_split=test_split,
        seed=seed,
        label_map=Path(UPLOADS) / upload_id / LABEL_MAP_FILE if label_map.exists() else None,
        pool=pool,
        archive_name=archive_name,
        limits=limits,
    )
