"""File safety: a reader (or the next run after a crash) sees a file or folder whole, old or new, never half-written.

- :func:`atomic_write` / :func:`atomic_write_json`: bytes, text or JSON written to a temporary file in the target's
  folder, flushed to disk (``fsync``), renamed over the target, and the folder's entry flushed too. An error mid-write
  leaves the old file as it was and no temporary file.
- :func:`atomic_path`: the same for writers that want a path (matplotlib's ``savefig``, Pillow's ``save``).
- :func:`replace_dir`: swap a complete folder into place; the old one is kept until the new one is in.
- :func:`staging_dir`: a hidden folder beside a target, to build it in; removed on error, swapped in on success.
- :func:`scratch_dir`: a hidden folder to build something that the block moves into place itself (under a name it
  picks, e.g. a version number); removed on error, and at the end if the block left it there.
- :func:`fresh_dir`: make a named folder; when the block fails, it goes with the parents made for it.

Temporary names start with a dot (``.tmp-...``, ``.<name>.<hex>.tmp``), so that the model server, TFS and the
dataset store, which skip hidden entries, never take one for a version. The renames are atomic only within one file
system, which is why every temporary sits beside its target. TensorFlow-free, standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TMP_PREFIX = ".tmp-"


def atomic_write(path: Path, data: bytes | str, *, encoding: str = "utf-8") -> Path:
    """Write ``data`` (text is encoded with ``encoding``) to ``path`` atomically and durably; ``path``.

    Missing parent folders are created. On any error the old file (if any) is left as it was and the temporary
    file is removed.
    """
    raw = data.encode(encoding) if isinstance(data, str) else data
    with _aside(Path(path), ".tmp") as temporary:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0o666 & umask, as open() makes it
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
    return path


def atomic_write_json(path: Path, body: Any, *, sort_keys: bool = False, indent: int | None = 2) -> Path:
    """Write ``body`` as JSON (``indent``-ed, a final newline; values JSON cannot hold as their ``str``) atomically."""
    return atomic_write(path, json.dumps(body, indent=indent, sort_keys=sort_keys, default=str) + "\n")


@contextlib.contextmanager
def atomic_path(path: Path, *, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` for the block to write; on success it is flushed and renamed over ``path``.

    ``suffix`` ends the temporary name (``.png`` for a writer that picks the format by extension). When the block
    raises, nothing is renamed and the temporary file is removed.
    """
    with _aside(Path(path), suffix) as temporary:
        yield temporary
        fsync_file(temporary)


@contextlib.contextmanager
def _aside(path: Path, suffix: str) -> Iterator[Path]:
    """A temporary name beside ``path``, renamed over it when the block succeeds, removed when it raises."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}{suffix}")
    try:
        yield temporary
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def replace_dir(source: Path, target: Path) -> None:
    """Move the complete folder ``source`` to ``target`` (same file system), replacing any folder there.

    ``source``'s files are flushed to disk first. An existing ``target`` is renamed aside (``.tmp-old-...``) and
    deleted only once ``source`` is in; if that second rename fails, the old folder is put back. So ``target`` is
    the old folder or the new one, never a mix (a crash between the two renames, a moment's window, leaves the old
    folder aside under its hidden name, and no ``target``).
    """
    fsync_tree(source)
    if not target.exists():
        source.rename(target)
        fsync_dir(target.parent)
        return
    old = target.with_name(f"{TMP_PREFIX}old-{target.name}-{uuid.uuid4().hex[:12]}")
    target.rename(old)
    try:
        source.rename(target)
    except BaseException:
        old.rename(target)
        raise
    fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def fresh_dir(folder: Path, *, keep: bool = True) -> Iterator[Path]:
    """Make ``folder`` (it must not exist yet) and its missing parents for the block to fill.

    When the block raises, ``folder`` is removed with the parents made for it that are still empty (another writer
    may have put something in one meanwhile), so the file system is left as it was. On success it stays, unless
    ``keep`` is false: then whatever the block has not moved away is removed too.

    Raises:
        FileExistsError: ``folder`` exists.
    """
    made = []
    parent = folder.parent
    while not parent.exists():
        made.append(parent)
        parent = parent.parent
    folder.mkdir(parents=True)
    try:
        yield folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        for empty in made:  # innermost first
            try:
                empty.rmdir()
            except OSError:
                break
        raise
    finally:
        if not keep and folder.exists():
            shutil.rmtree(folder, ignore_errors=True)


def scratch_dir(parent: Path, *, prefix: str = TMP_PREFIX) -> contextlib.AbstractContextManager[Path]:
    """A fresh folder ``parent/<prefix><hex>`` that the block fills and moves into place itself.

    It is removed when the block raises, and at the end when the block left it where it was (it published nothing);
    ``parent`` is made if missing, and stays. ``prefix`` should start with a dot, so that nothing that lists
    ``parent`` takes it for a real entry.
    """
    parent.mkdir(parents=True, exist_ok=True)
    return fresh_dir(parent / f"{prefix}{uuid.uuid4().hex[:12]}", keep=False)


@contextlib.contextmanager
def staging_dir(target: Path) -> Iterator[Path]:
    """A hidden folder beside ``target`` for the block to build it in; on success it replaces ``target`` whole
    (see :func:`replace_dir`), on error it is removed and ``target`` is left as it was."""
    with scratch_dir(target.parent, prefix=f"{TMP_PREFIX}{target.name}-") as folder:
        yield folder
        replace_dir(folder, target)


def fsync_file(path: Path) -> None:
    """Flush a file's contents to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename into it, a file created in it) to disk."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """Flush every file and folder under ``folder`` (before it is renamed into place)."""
    for dirpath, _, filenames in os.walk(folder):
        for filename in filenames:
            fsync_file(Path(dirpath) / filename)
        fsync_dir(Path(dirpath))
