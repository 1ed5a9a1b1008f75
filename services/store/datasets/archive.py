"""Zip and tar.gz archives of labelled images, checked before anything is written and extracted without trust.

Two passes, both with the same limits:

1. :func:`check_archive` reads only the listing (the gateway calls it as soon as an upload has arrived, so a hostile
   archive gets its 400 or 413 before any job is queued): every entry must be a plain file or folder with a relative
   path that stays inside the archive (no ``../``, no absolute or drive paths, no symbolic or hard links, devices or
   sparse files), at most 255 bytes long (so is each folder or file name in it: the file system's limit), of a type
   the format takes, and the entry count and declared sizes must be within the limits.
2. :func:`extract_archive` (in the import job) writes each allowed entry itself, never through ``extractall``: the
   target path is built from the checked name, opened with ``O_EXCL | O_NOFOLLOW``, and the bytes actually
   decompressed are counted against the limits, because the sizes a zip declares can lie.

Nothing here imports TensorFlow: the gateway uses it.
"""

from __future__ import annotations

import errno
import os
import re
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import IO

from services.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from services.settings import ArchiveLimits
from services.store.datasets.annotations import SourceFormat
from services.store.datasets.paths import IMAGE_SUFFIXES


class ArchiveKind(StrEnum):
    ZIP = "zip"
    TAR = "tar"


@dataclass(frozen=True, slots=True)
class Member:
    """One file of an archive that passed the checks: its safe relative path and its declared size."""

    name: str
    size: int


_RECORD_NAME = re.compile(r"\.(tfrecord|tfrecords|record|records|tfrec)(-\d+-of-\d+)?$", re.IGNORECASE)
_JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini"}
_DOC_SUFFIXES = (".txt", ".md", ".json")
_CHUNK = 1 << 20
MAX_NAME_BYTES = 255
"""Longest entry path (UTF-8 bytes) an archive may hold; each name in it is then within the file system's 255."""


def is_record_name(name: str) -> bool:
    """A TFRecord file by the names people give them (``train.record``, ``x.tfrecord-00000-of-00010``)."""
    return _RECORD_NAME.search(name) is not None


def member_role(fmt: SourceFormat, name: str) -> str:
    """``"data"`` (extract it), ``"ignored"`` (harmless: OS junk, a README; skipped) or ``"refused"``."""
    path = PurePosixPath(name)
    lower = path.name.lower()
    if "__MACOSX" in path.parts or lower in _JUNK_NAMES or lower.startswith("._"):
        return "ignored"
    if lower.endswith(_DOC_SUFFIXES):
        return "ignored"
    if lower.endswith(".pbtxt"):
        return "data"
    if fmt is SourceFormat.TFRECORD:
        return "data" if is_record_name(lower) else "refused"
    if lower.endswith(IMAGE_SUFFIXES):
        return "data"
    if (fmt is SourceFormat.VOC and lower.endswith(".xml")) or (fmt is SourceFormat.CSV and lower.endswith(".csv")):
        return "data"
    return "refused"


def sniff_archive(path: Path) -> ArchiveKind:
    """Zip or (gzipped) tar by the file's first bytes, not its name; anything else is 415."""
    with path.open("rb") as f:
        head = f.read(262 + 8)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return ArchiveKind.ZIP
    if head[:2] == b"\x1f\x8b" or head[257:262] == b"ustar":
        return ArchiveKind.TAR
    raise UnsupportedMediaType("the upload is not a zip or tar.gz archive")


def safe_name(raw: str) -> str | None:
    """The entry's path as a clean relative POSIX path, or ``None`` if it could land outside the target folder."""
    if not raw or "\x00" in raw:
        return None
    name = raw.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def _unsafe_reason(raw: str) -> str:
    name = raw.replace("\\", "/")
    if "\x00" in raw:
        return "a NUL byte in the path"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "an absolute path"
    return "a path that leaves the archive (..)"


def _length_problem(name: str) -> str:
    """Why an entry's path is too long for the file system ("" when it is not)."""
    size = len(name.encode("utf-8"))
    longest = max((len(part.encode("utf-8")) for part in name.split("/")), default=0)
    if longest > MAX_NAME_BYTES:
        return f"a file or folder name of {longest} bytes; at most {MAX_NAME_BYTES}"
    if size > MAX_NAME_BYTES:
        return f"a path of {size} bytes; at most {MAX_NAME_BYTES}"
    return ""


def _shorten(text: str, keep: int = 80) -> str:
    """A long entry name cut for messages (the full one is in no message: it is the attacker's text)."""
    return text if len(text) <= keep else f"{text[: keep // 2]}...{text[-keep // 2 :]}"


@dataclass(slots=True)
class _Entry:
    raw: str
    size: int
    kind: str  # "file", "dir", or why the entry is refused


def _zip_entries(archive: zipfile.ZipFile) -> Iterator[_Entry]:
    for info in archive.infolist():
        mode = (info.external_attr >> 16) & 0o170000
        if mode == 0o120000:
            yield _Entry(info.filename, info.file_size, "a symbolic link")
        elif info.flag_bits & 0x1:
            yield _Entry(info.filename, info.file_size, "encrypted")
        elif info.is_dir():
            yield _Entry(info.filename, 0, "dir")
        elif mode not in (0, 0o100000):
            yield _Entry(info.filename, info.file_size, "not a regular file")
        else:
            yield _Entry(info.filename, info.file_size, "file")


def _tar_entries(archive: tarfile.TarFile) -> Iterator[_Entry]:
    # Iterating reads one header at a time, so the caller's limits stop a huge listing early.
    for info in archive:
        if info.issym():
            yield _Entry(info.name, info.size, "a symbolic link")
        elif info.islnk():
            yield _Entry(info.name, info.size, "a hard link")
        elif info.issparse():
            yield _Entry(info.name, info.size, "a sparse file")
        elif info.isdir():
            yield _Entry(info.name, 0, "dir")
        elif info.isreg():
            yield _Entry(info.name, info.size, "file")
        else:
            yield _Entry(info.name, info.size, "a device or pipe")


def _open(path: Path) -> tuple[ArchiveKind, zipfile.ZipFile | tarfile.TarFile]:
    kind = sniff_archive(path)
    try:
        if kind is ArchiveKind.ZIP:
            return kind, zipfile.ZipFile(path)
        return kind, tarfile.open(path, mode="r:*")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise InvalidInput(f"the archive can't be read: {exc}") from exc


def _entries(opened: zipfile.ZipFile | tarfile.TarFile) -> Iterator[_Entry]:
    if isinstance(opened, zipfile.ZipFile):
        return _zip_entries(opened)
    return _tar_entries(opened)


def check_archive(path: Path, fmt: SourceFormat, limits: ArchiveLimits) -> list[Member]:
    """Check an archive's listing (see the module's text); the members to extract, or an error naming every bad one.

    Raises:
        UnsupportedMediaType: not a zip or tar(.gz).
        InvalidInput: unsafe entries (paths, links, devices, encryption) or files of other types; ``details`` lists
            each with its reason.
        PayloadTooLarge: too many entries, or declared sizes past the limits.
    """
    _, opened = _open(path)
    members: list[Member] = []
    refused: list[dict[str, str]] = []
    seen: set[str] = set()
    count = 0
    total = 0
    try:
        for entry in _entries(opened):
            if entry.kind == "dir":
                continue
            count += 1
            total += entry.size
            if count > limits.max_files:
                raise PayloadTooLarge(f"the archive holds more than {limits.max_files} files")
            if entry.size > limits.max_member_bytes:
                raise PayloadTooLarge(
                    f"{entry.raw!r} expands to {entry.size} bytes; at most {limits.max_member_bytes} per file"
                )
            if total > limits.max_expanded_bytes:
                raise PayloadTooLarge(f"the archive expands past {limits.max_expanded_bytes} bytes")
            name = safe_name(entry.raw)
            if entry.kind != "file":
                refused.append({"member": entry.raw, "reason": entry.kind})
            elif name is None:
                refused.append({"member": entry.raw, "reason": _unsafe_reason(entry.raw)})
            elif too_long := _length_problem(name):
                refused.append({"member": _shorten(entry.raw), "reason": too_long})
            elif name in seen:
                refused.append({"member": entry.raw, "reason": "a second entry with the same path"})
            else:
                seen.add(name)
                role = member_role(fmt, name)
                if role == "refused":
                    refused.append({"member": entry.raw, "reason": f"not a file type a {fmt} import takes"})
                elif role == "data":
                    members.append(Member(name, entry.size))
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise InvalidInput(f"the archive can't be read: {exc}") from exc
    finally:
        opened.close()
    if refused:
        shown = "; ".join(f"{_shorten(r['member'])!r}: {r['reason']}" for r in refused[:5])
        more = f" (and {len(refused) - 5} more)" if len(refused) > 5 else ""
        raise InvalidInput(f"the archive was refused: {shown}{more}", details={"refused": refused})
    if not members:
        raise InvalidInput(f"the archive holds no files a {fmt} import takes")
    return members


def extract_archive(
    path: Path,
    dest: Path,
    fmt: SourceFormat,
    limits: ArchiveLimits,
    on_file: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Check the archive again, then write its allowed members under the empty folder ``dest``; the files written.

    The bytes really decompressed are counted: a member that grows past its declared size, past the per-file limit,
    or that takes the total past the limit stops the extraction with :class:`PayloadTooLarge`. The caller removes
    ``dest`` on any error.
    """
    members = {m.name: m for m in check_archive(path, fmt, limits)}
    _, opened = _open(path)
    dest_real = dest.resolve()
    written: list[Path] = []
    budget = [limits.max_expanded_bytes]
    try:
        if isinstance(opened, zipfile.ZipFile):
            for info in opened.infolist():
                name = safe_name(info.filename)
                if name in members and not info.is_dir():
                    with opened.open(info) as src:
                        written.append(_write_member(src, dest_real, name, info.file_size, limits, budget))
                    if on_file:
                        on_file(len(written), len(members))
        else:
            for tinfo in opened:
                name = safe_name(tinfo.name)
                if name in members and tinfo.isreg() and not tinfo.issparse():
                    src_file = opened.extractfile(tinfo)
                    if src_file is None:  # pragma: no cover - isreg() members always have a file object
                        continue
                    with src_file:
                        written.append(_write_member(src_file, dest_real, name, tinfo.size, limits, budget))
                    if on_file:
                        on_file(len(written), len(members))
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise InvalidInput(f"the archive can't be read: {exc}") from exc
    finally:
        opened.close()
    return written


def _write_member(
    src: IO[bytes], dest: Path, name: str, declared: int, limits: ArchiveLimits, budget: list[int]
) -> Path:
    target = dest.joinpath(*name.split("/"))
    # The name was checked, but the target is checked again where it is built: defence in depth.
    if not target.resolve().is_relative_to(dest):
        raise InvalidInput(f"{name!r}: a path that leaves the archive")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.parent.resolve() != target.parent or not target.parent.resolve().is_relative_to(dest):
            raise InvalidInput(f"{name!r}: a folder in its path is a link")
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError as exc:
        raise InvalidInput(f"{name!r}: a second entry with the same path") from exc
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:  # checked by the listing; the server's own path may add to it
            raise InvalidInput(f"{_shorten(name)!r}: the path is too long for the file system") from exc
        raise
    written = 0
    with os.fdopen(fd, "wb") as out:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            budget[0] -= len(chunk)
            if written > declared:
                raise PayloadTooLarge(f"{name!r} expands past the {declared} bytes its archive entry declares")
            if written > limits.max_member_bytes:
                raise PayloadTooLarge(f"{name!r} expands past {limits.max_member_bytes} bytes")
            if budget[0] < 0:
                raise PayloadTooLarge(f"the archive expands past {limits.max_expanded_bytes} bytes")
            out.write(chunk)
    return target
