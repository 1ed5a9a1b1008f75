"""services.files: atomic file writes, folder swaps and staging folders, checked by what is left on disk."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.files import (
    atomic_path,
    atomic_write,
    atomic_write_json,
    fresh_dir,
    replace_dir,
    scratch_dir,
    staging_dir,
)

REPO = Path(__file__).resolve().parent.parent


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh Python (for what a test process must not do to itself: limits, SIGKILL)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )


def _fill(folder: Path, generation: int, files: int = 5) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (folder / f"f{i}.txt").write_text(f"gen {generation} file {i}\n")
    return folder


def test_atomic_write_writes_bytes_and_text_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "out.bin"  # missing folders are made
    assert atomic_write(target, b"\x00\x01binary") == target
    assert target.read_bytes() == b"\x00\x01binary"
    atomic_write(target, "héllo", encoding="utf-8")
    assert target.read_bytes() == "héllo".encode()
    atomic_write(target, "héllo", encoding="latin-1")
    assert target.read_bytes() == "héllo".encode("latin-1")
    assert _entries(target.parent) == ["out.bin"]


def test_atomic_write_makes_files_with_the_usual_permissions(tmp_path: Path) -> None:
    # a temporary made by mkstemp would be 0600 and so would the file renamed from it: readers in other accounts
    # (the gateway reading a job's result) could no longer read it
    previous = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.json", "{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644


def test_a_write_that_fails_half_way_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "model.json"
    target.write_text("old and whole\n")
    # A real failure in the middle of writing: the file-size limit is hit after the first 64 KiB are written.
    done = _run(
        """
        import resource, signal, sys
        from pathlib import Path
        from services.files import atomic_write
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so that write() fails with EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
        try:
            atomic_write(Path(sys.argv[1]), b"x" * (1024 * 1024))
        except OSError as exc:
            print("failed:", exc.errno)
        """,
        str(target),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("failed: 27")  # EFBIG
    assert target.read_text() == "old and whole\n"
    assert _entries(tmp_path) == ["model.json"]


def test_an_error_inside_atomic_path_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "curve.png"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="plot failed"), atomic_path(target, suffix=".png") as temporary:
        assert temporary.parent == tmp_path and temporary.name.startswith(".") and temporary.suffix == ".png"
        temporary.write_bytes(b"half a pn")
        raise RuntimeError("plot failed")
    assert target.read_bytes() == b"old"
    assert _entries(tmp_path) == ["curve.png"]


def test_atomic_path_renames_what_the_block_wrote(tmp_path: Path) -> None:
    target = tmp_path / "curve.png"
    with atomic_path(target, suffix=".png") as temporary:
        temporary.write_bytes(b"new")
        assert not target.exists()  # nothing is visible before the block ends
    assert target.read_bytes() == b"new"
    assert _entries(tmp_path) == ["curve.png"]


def test_a_process_killed_mid_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "run.json"
    target.write_text('{"epochs_done": 3}\n')
    done = _run(
        """
        import os, signal, sys
        from pathlib import Path
        from services.files import atomic_path
        with atomic_path(Path(sys.argv[1])) as temporary:
            temporary.write_text('{"epochs_do')
            os.kill(os.getpid(), signal.SIGKILL)
        """,
        str(target),
    )
    assert done.returncode == -9
    assert json.loads(target.read_text()) == {"epochs_done": 3}
    leftovers = [name for name in _entries(tmp_path) if name != "run.json"]
    assert all(name.startswith(".run.json.") for name in leftovers)  # hidden, beside it: nothing lists it


def test_readers_see_the_old_file_or_the_new_one_never_a_mix(tmp_path: Path) -> None:
    target = tmp_path / "big.bin"
    versions = [bytes([65 + i]) * 512 * 1024 for i in range(2)]
    atomic_write(target, versions[0])
    stop = threading.Event()

    def writer() -> None:
        for i in range(40):
            atomic_write(target, versions[i % 2])
        stop.set()

    thread = threading.Thread(target=writer)
    thread.start()
    seen = set()
    while not stop.is_set():
        data = target.read_bytes()  # never a FileNotFoundError: the rename replaces the file in one step
        assert data in versions
        seen.add(data[:1])
    thread.join()
    assert seen  # the reader did read while the writer wrote


def test_atomic_write_fsyncs_the_file_and_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    atomic_write(tmp_path / "a.txt", "x")
    assert synced == ["file", "folder"]  # the data before the rename, the rename itself after
    synced.clear()
    with atomic_path(tmp_path / "b.txt") as temporary:
        temporary.write_text("y")
    assert synced == ["file", "folder"]


def test_atomic_write_json_writes_readable_json(tmp_path: Path) -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    path = atomic_write_json(tmp_path / "r.json", {"b": 1, "a": tmp_path, "when": when}, sort_keys=True)
    text = path.read_text()
    assert text.endswith("}\n") and text.index('"a"') < text.index('"b"')
    assert json.loads(text) == {"a": str(tmp_path), "b": 1, "when": str(when)}
    atomic_write_json(path, {"b": 1, "a": 2})
    assert list(json.loads(path.read_text())) == ["b", "a"]  # order kept unless sorted


def test_replace_dir_swaps_a_folder_in_whole(tmp_path: Path) -> None:
    target = _fill(tmp_path / "final", 1, files=3)
    new = _fill(tmp_path / ".tmp-new", 2, files=2)
    replace_dir(new, target)
    assert _entries(target) == ["f0.txt", "f1.txt"]
    assert (target / "f0.txt").read_text() == "gen 2 file 0\n"
    assert _entries(tmp_path) == ["final"]  # neither the staged folder nor the old one is left


def test_replace_dir_moves_a_folder_in_where_there_was_none(tmp_path: Path) -> None:
    new = _fill(tmp_path / ".tmp-new", 1)
    replace_dir(new, tmp_path / "3")
    assert _entries(tmp_path) == ["3"] and len(_entries(tmp_path / "3")) == 5


def test_replace_dir_puts_the_old_folder_back_when_the_new_one_cannot_go_in(tmp_path: Path) -> None:
    target = _fill(tmp_path / "examples", 1)
    with pytest.raises(FileNotFoundError):
        replace_dir(tmp_path / ".tmp-vanished", target)
    assert _entries(tmp_path) == ["examples"]
    assert [(target / f"f{i}.txt").read_text() for i in range(5)] == [f"gen 1 file {i}\n" for i in range(5)]


def test_replace_dir_refuses_another_file_system_and_keeps_the_old(tmp_path: Path) -> None:
    other = Path("/dev/shm")
    if not other.is_dir() or other.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on another file system than the test's folder")
    target = _fill(tmp_path / "final", 1)
    with scratch_dir(other, prefix=".tmp-spotter-test-") as elsewhere:
        _fill(elsewhere, 2)
        with pytest.raises(OSError, match=r"[Cc]ross-device"):
            replace_dir(elsewhere, target)
    assert _entries(tmp_path) == ["final"]
    assert (target / "f0.txt").read_text() == "gen 1 file 0\n"


def test_a_reader_of_a_swapped_folder_sees_one_generation_whole(tmp_path: Path) -> None:
    target = _fill(tmp_path / "epoch-0004", 0)
    stop = threading.Event()

    def swapper() -> None:
        for generation in range(1, 30):
            with staging_dir(target) as staged:
                _fill(staged, generation)
        stop.set()

    thread = threading.Thread(target=swapper)
    thread.start()
    whole = 0
    while not stop.is_set():
        try:
            fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)  # pin one folder, as a loading server does
        except FileNotFoundError:
            continue  # the moment between the two renames: no folder, never a mixed one
        texts = []
        try:
            names = sorted(os.listdir(fd))  # noqa: PTH208 (a folder's descriptor: pathlib has no way)
            for name in names:
                file_fd = os.open(name, os.O_RDONLY, dir_fd=fd)
                try:
                    texts.append(os.read(file_fd, 4096).decode())
                finally:
                    os.close(file_fd)
        except FileNotFoundError:
            pass  # the pinned folder was replaced and is being deleted: what was read must still be one generation
        finally:
            os.close(fd)
        assert len({text.split()[1] for text in texts}) <= 1, texts
        whole += len(texts) == 5
    thread.join()
    assert whole  # the reader did see whole folders while the swapper swapped
    assert _entries(tmp_path) == ["epoch-0004"]


def test_replace_dir_fsyncs_the_new_files_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(str(Path(f"/proc/self/fd/{fd}").readlink()))
        real_fsync(fd)

    new = _fill(tmp_path / ".tmp-new", 1, files=2)
    monkeypatch.setattr(os, "fsync", recording_fsync)
    replace_dir(new, tmp_path / "final")
    assert str(new / "f0.txt") in synced and str(new / "f1.txt") in synced and str(new) in synced
    assert synced[-1] == str(tmp_path)  # the rename is flushed last


def test_staging_dir_replaces_the_target_on_success(tmp_path: Path) -> None:
    target = _fill(tmp_path / "final", 1)
    with staging_dir(target) as staged:
        assert staged.parent == tmp_path and staged.name.startswith(".tmp-final-")
        assert _entries(target) == [f"f{i}.txt" for i in range(5)]  # the old one stays in place meanwhile
        (staged / "model.weights.h5").write_bytes(b"w")
    assert _entries(target) == ["model.weights.h5"]
    assert _entries(tmp_path) == ["final"]


def test_staging_dir_is_removed_on_error_and_the_target_stays(tmp_path: Path) -> None:
    target = _fill(tmp_path / "final", 1)
    with pytest.raises(KeyboardInterrupt), staging_dir(target) as staged:
        (staged / "half.h5").write_bytes(b"half")
        raise KeyboardInterrupt  # not only Exception: a stop signal must not leave a staging folder either
    assert _entries(tmp_path) == ["final"]
    assert (target / "f0.txt").read_text() == "gen 1 file 0\n"


def test_staging_dir_makes_a_target_that_did_not_exist(tmp_path: Path) -> None:
    target = tmp_path / "new" / "examples"
    with staging_dir(target) as staged:
        (staged / "ground_truth.json").write_text("{}")
    assert _entries(target) == ["ground_truth.json"] and _entries(target.parent) == ["examples"]


def test_a_process_killed_while_staging_leaves_the_target_and_a_hidden_leftover(tmp_path: Path) -> None:
    target = _fill(tmp_path / "final", 1)
    done = _run(
        """
        import os, signal, sys
        from pathlib import Path
        from services.files import staging_dir
        with staging_dir(Path(sys.argv[1])) as staged:
            (staged / "half.h5").write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGKILL)
        """,
        str(target),
    )
    assert done.returncode == -9
    assert (target / "f0.txt").read_text() == "gen 1 file 0\n" and len(_entries(target)) == 5
    leftovers = [name for name in _entries(tmp_path) if name != "final"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-final-")  # what a sweep of .tmp-* finds


def test_scratch_dir_keeps_what_the_block_moved_away_and_removes_the_rest(tmp_path: Path) -> None:
    with scratch_dir(tmp_path / "models" / "demo") as staged:
        assert staged.name.startswith(".tmp-")
        (staged / "saved_model.pb").write_bytes(b"pb")
        staged.rename(tmp_path / "models" / "demo" / "1")  # the block publishes under a name it picks
    assert _entries(tmp_path / "models" / "demo") == ["1"]
    with scratch_dir(tmp_path / "models" / "demo") as staged:
        (staged / "saved_model.pb").write_bytes(b"pb")  # published nothing
    assert _entries(tmp_path / "models" / "demo") == ["1"]
    with pytest.raises(ValueError), scratch_dir(tmp_path / "models" / "demo", prefix=".tmp-job7-") as staged:
        assert staged.name.startswith(".tmp-job7-")
        raise ValueError("export failed")
    assert _entries(tmp_path / "models" / "demo") == ["1"]


def test_fresh_dir_on_error_removes_the_folder_and_the_parents_it_made(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    with pytest.raises(OSError), fresh_dir(tmp_path / "data" / "uploads" / "job1") as folder:
        (folder / "archive").write_bytes(b"half an archive")
        raise OSError("client went away")
    assert _entries(tmp_path) == ["data"] and _entries(tmp_path / "data") == []  # as it was


def test_fresh_dir_keeps_a_parent_someone_else_wrote_into(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), fresh_dir(tmp_path / "uploads" / "job1"):
        (tmp_path / "uploads" / "job2").mkdir()  # a concurrent upload
        raise RuntimeError("refused")
    assert _entries(tmp_path / "uploads") == ["job2"]


def test_fresh_dir_stays_on_success_unless_not_kept(tmp_path: Path) -> None:
    with fresh_dir(tmp_path / "uploads" / "job1") as folder:
        (folder / "archive").write_bytes(b"zip")
    assert (tmp_path / "uploads" / "job1" / "archive").read_bytes() == b"zip"
    with pytest.raises(FileExistsError), fresh_dir(tmp_path / "uploads" / "job1"):
        pass  # never two writers in one folder
    assert (tmp_path / "uploads" / "job1" / "archive").read_bytes() == b"zip"
    with fresh_dir(tmp_path / "datasets" / "cats" / ".tmp-job3-abc", keep=False) as folder:
        (folder / "version").mkdir()
    assert _entries(tmp_path / "datasets" / "cats") == []
