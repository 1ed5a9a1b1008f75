"""Hostile archives are refused with a clear error, and the data folder is left exactly as it was."""

from __future__ import annotations

import io
import struct
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from services.errors import InvalidInput, PayloadTooLarge, SpotterError, UnsupportedMediaType
from services.settings import ArchiveLimits
from services.store.datasets.annotations import SourceFormat
from services.store.datasets.archive import check_archive, extract_archive, safe_name
from services.store.datasets.request import ImportRequest
from services.store.datasets.storage import DatasetStore
from services.training.datasets.importer import import_dataset
from tests.datasets.fixtures import tree

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64  # enough to be listed; never decoded here


def make_zip(path: Path, entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return path


def make_tar(path: Path, entries: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tf.addfile(entry)
            else:
                name, data = entry
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def zip_symlink(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.external_attr = (0o120777 << 16) | 0x20
    return info, target.encode()


def tar_entry(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


HOSTILE: dict[str, tuple[Callable[[Path], Path], type[SpotterError], str]] = {
    "zip ../ path": (
        lambda d: make_zip(d / "a.zip", [("ok.xml", b"<a/>"), ("../evil.jpg", JPEG)]),
        InvalidInput,
        "leaves",
    ),
    "zip nested ../": (lambda d: make_zip(d / "a.zip", [("x/../../evil.jpg", JPEG)]), InvalidInput, "leaves"),
    "zip absolute path": (lambda d: make_zip(d / "a.zip", [("/tmp/evil.jpg", JPEG)]), InvalidInput, "absolute"),
    "zip drive path": (lambda d: make_zip(d / "a.zip", [("C:\\evil.jpg", JPEG)]), InvalidInput, "absolute"),
    "zip backslash ..": (lambda d: make_zip(d / "a.zip", [("..\\evil.jpg", JPEG)]), InvalidInput, "leaves"),
    "zip symlink": (lambda d: make_zip(d / "a.zip", [zip_symlink("link.jpg", "/etc/passwd")]), InvalidInput, "link"),
    "tar ../ path": (lambda d: make_tar(d / "a.tar.gz", [("../evil.jpg", JPEG)]), InvalidInput, "leaves"),
    "tar absolute path": (lambda d: make_tar(d / "a.tar.gz", [("/etc/evil.jpg", JPEG)]), InvalidInput, "absolute"),
    "tar symlink": (
        lambda d: make_tar(d / "a.tar.gz", [tar_entry("x.jpg", tarfile.SYMTYPE, "/etc/passwd")]),
        InvalidInput,
        "symbolic link",
    ),
    "tar hardlink": (
        lambda d: make_tar(d / "a.tar.gz", [("a.jpg", JPEG), tar_entry("b.jpg", tarfile.LNKTYPE, "a.jpg")]),
        InvalidInput,
        "hard link",
    ),
    "tar device": (lambda d: make_tar(d / "a.tar.gz", [tar_entry("dev.jpg", tarfile.CHRTYPE)]), InvalidInput, "device"),
    "other file types": (
        lambda d: make_zip(d / "a.zip", [("a.jpg", JPEG), ("run.sh", b"rm -rf /"), ("x.exe", b"MZ")]),
        InvalidInput,
        "not a file type",
    ),
    "duplicate entries": (
        lambda d: make_zip(d / "a.zip", [("a.jpg", JPEG), ("./a.jpg", JPEG)]),
        InvalidInput,
        "same path",
    ),
    "too many files": (
        lambda d: make_zip(d / "a.zip", [(f"img{i}.jpg", JPEG) for i in range(12)]),
        PayloadTooLarge,
        "more than 10 files",
    ),
    "zip bomb (declared size)": (
        lambda d: make_zip(d / "a.zip", [("big.jpg", b"\x00" * (3 << 20))]),
        PayloadTooLarge,
        "expands",
    ),
    "tar bomb (declared size)": (
        lambda d: make_tar(d / "a.tar.gz", [("big.jpg", b"\x00" * (3 << 20))]),
        PayloadTooLarge,
        "expands",
    ),
    "not an archive": (lambda d: _write(d / "a.zip", b"just some text, no archive"), UnsupportedMediaType, "not a zip"),
    "truncated zip": (lambda d: _write(d / "a.zip", b"PK\x03\x04" + b"\x00" * 30), InvalidInput, "can't be read"),
}

LIMITS = ArchiveLimits(max_files=10, max_expanded_bytes=1 << 20, max_member_bytes=1 << 20)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_archives_are_refused_and_leave_the_data_folder_as_it_was(case: str, tmp_path: Path) -> None:
    make, error, words = HOSTILE[case]
    archive = make(tmp_path)
    with pytest.raises(error) as listed:
        check_archive(archive, SourceFormat.VOC, LIMITS)
    assert words in listed.value.message

    data = tmp_path / "data"
    (data / "datasets" / "kept").mkdir(parents=True)
    (data / "datasets" / "kept" / "note").write_text("untouched")
    before = tree(data)
    request = ImportRequest(name="hostile", format=SourceFormat.VOC, source=archive, limits=LIMITS)
    with pytest.raises(error):
        import_dataset(request, DatasetStore(data))
    assert tree(data) == before
    assert not (tmp_path / "evil.jpg").exists() and not Path("/tmp/evil.jpg").exists()


def test_every_refused_entry_is_listed_with_its_reason(tmp_path: Path) -> None:
    archive = make_zip(
        tmp_path / "a.zip", [("../a.jpg", JPEG), ("/b.jpg", JPEG), zip_symlink("c.jpg", "/etc"), ("d.py", b"")]
    )
    with pytest.raises(InvalidInput) as refused:
        check_archive(archive, SourceFormat.VOC, LIMITS)
    reasons = {r["member"]: r["reason"] for r in refused.value.details["refused"]}
    assert set(reasons) == {"../a.jpg", "/b.jpg", "c.jpg", "d.py"}


def _lie_about_sizes(path: Path, declared: int) -> None:
    """Patch a one-file zip so that its headers declare ``declared`` bytes for a bigger file."""
    data = bytearray(path.read_bytes())
    local = data.index(b"PK\x03\x04")
    struct.pack_into("<I", data, local + 22, declared)
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, declared)
    path.write_bytes(bytes(data))


def test_a_zip_that_lies_about_its_sizes_is_stopped_while_extracting(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "liar.zip", [("big.jpg", b"\x00" * (4 << 20))])
    _lie_about_sizes(archive, 1000)
    members = check_archive(archive, SourceFormat.VOC, LIMITS)  # the listing looks harmless
    assert members[0].size == 1000
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises((InvalidInput, PayloadTooLarge)):
        extract_archive(archive, dest, SourceFormat.VOC, LIMITS)
    written = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    assert written <= 1000  # never more than declared reached the disk

    data = tmp_path / "data"
    with pytest.raises((InvalidInput, PayloadTooLarge)):
        import_dataset(
            ImportRequest(name="liar", format=SourceFormat.VOC, source=archive, limits=LIMITS), DatasetStore(data)
        )
    assert tree(data) == []


def test_junk_and_documents_are_skipped_not_refused(tmp_path: Path) -> None:
    archive = make_zip(
        tmp_path / "a.zip",
        [("a.jpg", JPEG), ("a.xml", b"<a/>"), ("__MACOSX/._a.jpg", b""), (".DS_Store", b""), ("README.txt", b"hi")],
    )
    names = [m.name for m in check_archive(archive, SourceFormat.VOC, LIMITS)]
    assert names == ["a.jpg", "a.xml"]


def test_extraction_writes_only_checked_members_inside_the_target(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "a.tar.gz", [("./imgs/a.jpg", JPEG), ("imgs/a.xml", b"<a/>"), ("notes.md", b"x")])
    dest = tmp_path / "out"
    dest.mkdir()
    written = extract_archive(archive, dest, SourceFormat.VOC, LIMITS)
    assert sorted(p.relative_to(dest).as_posix() for p in written) == ["imgs/a.jpg", "imgs/a.xml"]
    assert (dest / "imgs" / "a.jpg").read_bytes() == JPEG


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a/b.jpg", "a/b.jpg"),
        ("./a//b.jpg", "a/b.jpg"),
        ("a\\b.jpg", "a/b.jpg"),
        ("../a.jpg", None),
        ("a/../../b", None),
        ("/abs", None),
        ("C:/x", None),
        ("a\x00b", None),
        ("", None),
    ],
)
def test_safe_name(raw: str, expected: str | None) -> None:
    assert safe_name(raw) == expected


def test_a_symlink_in_a_folder_source_is_never_followed(tmp_path: Path) -> None:
    from services.store.datasets.paths import walk_files

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.jpg").write_bytes(JPEG)
    (src / "evil.jpg").symlink_to("/etc/passwd")
    (src / "dir").symlink_to("/etc")
    assert [p.name for p in walk_files(src)] == ["a.jpg"]
