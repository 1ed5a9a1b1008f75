"""Versioned dataset storage: ``<data_dir>/datasets/<name>/<version>/`` with integer versions from 1.

A version is immutable and appears whole or not at all: it is built in a staging folder beside the versions
(``<name>/.tmp-<uuid>``, a name that is never an integer), then renamed into place under the next free number. A
failed import removes its staging folder and any folder it created, so the data folder is left as it was. No
TensorFlow here: the gateway lists and shows datasets through this module.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from services.errors import DatasetNotFound, InvalidParameter
from services.files import fresh_dir, fsync_dir, fsync_tree
from services.jobs.params import NAME_PATTERN
from services.store.datasets.manifest import MANIFEST, Manifest, read_manifest

logger = logging.getLogger(__name__)

STAGING_PREFIX = ".tmp-"


def check_name(name: str) -> str:
    """A dataset name: 1-64 letters, digits, ``_``, ``.``, ``-``, starting with a letter or digit.

    Raises:
        InvalidParameter: any other name (it becomes a folder name).
    """
    if not NAME_PATTERN.match(name) or ".." in name:
        raise InvalidParameter(
            f"dataset name {name!r} is not allowed: use 1-64 letters, digits, '_', '.', '-', "
            "starting with a letter or digit"
        )
    return name


class DatasetStore:
    """The datasets under one data folder."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.root = data_dir / "datasets"

    def names(self) -> list[str]:
        """Dataset names that have at least one version, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if NAME_PATTERN.match(p.name) and self.versions(p.name))

    def versions(self, name: str) -> list[int]:
        """The published versions of ``name``, ascending (empty when there are none)."""
        folder = self.root / check_name(name)
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and (p / MANIFEST).is_file())

    def latest(self, name: str) -> int:
        """The highest version of ``name``.

        Raises:
            DatasetNotFound: no such dataset.
        """
        versions = self.versions(name)
        if not versions:
            raise DatasetNotFound(f"dataset {name!r} not found")
        return versions[-1]

    def path(self, name: str, version: int | None = None) -> Path:
        """The folder of a version (the latest when ``version`` is None).

        Raises:
            DatasetNotFound: no such dataset or version.
        """
        number = self.latest(name) if version is None else version
        folder = self.root / check_name(name) / str(number)
        if not (folder / MANIFEST).is_file():
            raise DatasetNotFound(f"dataset {name!r} has no version {number}")
        return folder

    def manifest(self, name: str, version: int | None = None) -> Manifest:
        """The manifest of a version (the latest when ``version`` is None)."""
        return read_manifest(self.path(name, version))

    def manifests(self, name: str) -> list[Manifest]:
        """Every version's manifest, ascending.

        Raises:
            DatasetNotFound: no such dataset.
        """
        versions = self.versions(name)
        if not versions:
            raise DatasetNotFound(f"dataset {name!r} not found")
        return [read_manifest(self.root / name / str(v)) for v in versions]

    @contextmanager
    def staging(self, name: str, token: str = "") -> Iterator[Path]:
        """A fresh staging folder for a new version of ``name``; on any error it is removed with the folders it
        created, so the data folder is left as it was. Publish it with :meth:`publish` inside the ``with`` block.

        Args:
            name: the dataset.
            token: put in the folder's name (``.tmp-<token>-<random>``): the job id, so that the worker can remove
                what a killed job left (see :meth:`remove_staging`).
        """
        prefix = f"{STAGING_PREFIX}{token}-" if token else STAGING_PREFIX
        with fresh_dir(self.root / check_name(name) / f"{prefix}{uuid.uuid4().hex[:12]}", keep=False) as folder:
            yield folder

    def next_version(self, name: str) -> int:
        versions = self.versions(name)
        return (versions[-1] if versions else 0) + 1

    def publish(self, staged: Path, name: str, finalize: Callable[[Path, int], None]) -> tuple[int, Path]:
        """Rename a complete staging folder into place under the next free version number; (version, folder).

        ``finalize(staged, version)`` runs just before the rename (it writes the manifest, which names its version).
        Two imports of the same name may race: ``rename`` onto a version that has appeared meanwhile fails (the
        target is not empty), and the next number is tried, finalized again.
        """
        for _ in range(1000):
            version = self.next_version(name)
            finalize(staged, version)
            fsync_tree(staged)
            target = self.root / name / str(version)
            try:
                staged.rename(target)
            except OSError:
                if target.exists():
                    continue
                raise
            fsync_dir(target.parent)
            logger.info("published dataset %s version %d", name, version)
            return version, target
        raise RuntimeError(f"could not find a free version number for dataset {name!r}")  # pragma: no cover

    def staged(self) -> list[tuple[Path, str]]:
        """The staging folders there are now (an import running, or one that died), each with the token it was
        named with (``""`` for none): what the worker's sweep of leftovers looks at."""
        if not self.root.is_dir():
            return []
        found = (p for p in self.root.glob(f"*/{STAGING_PREFIX}*") if p.is_dir())
        return [(p, p.name[len(STAGING_PREFIX) :].rpartition("-")[0]) for p in found]

    def remove_staging(self, token: str) -> int:
        """Remove the staging folders of one job (by its token), e.g. after its process was killed."""
        found = [folder for folder, named in self.staged() if token and named == token]
        for folder in found:
            shutil.rmtree(folder, ignore_errors=True)
        return len(found)

    def remove_stale_staging(self, older_than_s: float = 6 * 3600) -> int:
        """Remove staging folders left by imports that died (a killed worker) more than ``older_than_s`` ago."""
        cutoff = time.time() - older_than_s
        found = [folder for folder, _ in self.staged() if folder.stat().st_mtime < cutoff]
        for folder in found:
            shutil.rmtree(folder, ignore_errors=True)
        return len(found)
