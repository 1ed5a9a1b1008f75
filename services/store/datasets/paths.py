"""Finding files inside an import's root folder, and never outside it.

Sources name images by paths written on someone else's machine (``C:\\labels\\img 1.jpg``, ``../images/a.jpg``). An
image is looked for only inside the import root: first at the named relative path, then by its file name anywhere
under the root. When several files have that name (``train/a.jpg`` and ``val/a.jpg``) and none is nearer the
annotation file than the others, the name is ambiguous (:class:`AmbiguousImage`, reported with every path), never
guessed. Symbolic links are never followed.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
"""Image files an import takes (the TF Object Detection API's ``image/format`` is ``jpeg`` or ``png``)."""


def walk_files(root: Path) -> list[Path]:
    """Every regular file under ``root``, sorted, without following symbolic links (which are skipped)."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(filenames):
            path = base / name
            if not path.is_symlink() and path.is_file():
                found.append(path)
    return found


def is_image_name(path: Path | str) -> bool:
    return str(path).lower().endswith(IMAGE_SUFFIXES)


def index_images(files: list[Path]) -> dict[str, list[Path]]:
    """The image files among ``files`` by lower-cased file name (a name may occur in several folders)."""
    index: dict[str, list[Path]] = {}
    for path in files:
        if is_image_name(path):
            index.setdefault(path.name.lower(), []).append(path)
    return index


class AmbiguousImage(Exception):
    """A file name that several images under the import root have, none of them nearer than the others."""

    def __init__(self, candidates: list[Path]) -> None:
        super().__init__(", ".join(str(p) for p in candidates))
        self.candidates = candidates

    def describe(self, name: str, root: Path) -> str:
        """The problem's message: the name and every path it could mean, relative to ``root``."""
        paths = ", ".join(p.relative_to(root).as_posix() for p in self.candidates)
        count = len(self.candidates)
        return f"image {name!r} is ambiguous: {count} files have that name ({paths}); name one by its path"


def find_image(name: str, base_dir: Path, root: Path, images: dict[str, list[Path]]) -> Path | None:
    """The file that ``name`` means, relative to ``base_dir`` or ``root``, or by file name; ``None`` if not found.

    Raises:
        AmbiguousImage: only the file name matches, and several files have it.
    """
    posix = PurePosixPath(name.replace("\\", "/"))
    if not posix.is_absolute() and ".." not in posix.parts and ":" not in posix.as_posix():
        for base in (base_dir, root):
            candidate = base / posix
            if _inside(candidate, root) and candidate.is_file() and not candidate.is_symlink():
                return candidate
    found = images.get(posix.name.lower(), [])
    if len(found) > 1:
        # The same name in several folders: the nearest one under the annotation file's folder, if only one is.
        under = [p for p in found if p.is_relative_to(base_dir)]
        depth = min((len(p.relative_to(base_dir).parts) for p in under), default=0)
        nearest = [p for p in under if len(p.relative_to(base_dir).parts) == depth]
        if len(nearest) != 1:
            raise AmbiguousImage(sorted(found))
        return nearest[0]
    return found[0] if found else None


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True
