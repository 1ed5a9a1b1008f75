"""Tiny labelled datasets on disk, made from seeded synthetic scenes, in every import format (TensorFlow-free).

Used by ``tests/datasets`` and ``tests/tf/datasets``; scenes are 96-128 px so a dozen images import in moments.
"""

from __future__ import annotations

import csv
import tarfile
import zipfile
from pathlib import Path

from services.training.datasets.annotations import ObjectAnnotation
from services.training.datasets.voc import write_voc
from services.training.synthetic import Scene, generate_scenes

SIZE = 112


def scenes(seed: int = 7, count: int = 12, *, objects: tuple[int, int] = (1, 3), size: int = SIZE) -> list[Scene]:
    return list(generate_scenes(seed, count, width=size, height=size, objects=objects, object_size=(14, 30), clutter=4))


def write_voc_dataset(folder: Path, items: list[Scene], *, fmt: str = "JPEG") -> list[str]:
    """``images/scene_NNN.jpg`` and ``annotations/scene_NNN.xml`` (LabelImg's layout); the image names."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "annotations").mkdir(parents=True, exist_ok=True)
    names = []
    suffix = ".jpg" if fmt == "JPEG" else ".png"
    for i, scene in enumerate(items):
        name = f"scene_{i:03d}{suffix}"
        scene.image.save(folder / "images" / name, format=fmt, quality=95)
        objects = [ObjectAnnotation(o.label, o.box) for o in scene.objects]
        write_voc(folder / "annotations" / f"scene_{i:03d}.xml", name, SIZE, SIZE, objects, folder="images")
        names.append(name)
    return names


def write_csv_dataset(folder: Path, items: list[Scene], *, csv_name: str = "labels.csv") -> list[list[str]]:
    """``images/*.jpg`` and one CSV row per box; the rows written (without the header)."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, scene in enumerate(items):
        name = f"scene_{i:03d}.jpg"
        scene.image.save(folder / "images" / name, format="JPEG", quality=95)
        w, h = scene.image.size
        for o in scene.objects:
            b = o.box
            rows.append([name, str(w), str(h), o.label, *(f"{v:g}" for v in (b.xmin, b.ymin, b.xmax, b.ymax))])
    write_csv(folder / csv_name, rows)
    return rows


def write_csv(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"])
        writer.writerows(rows)


def write_folders_dataset(folder: Path, items: list[Scene]) -> dict[str, str]:
    """``<class>/scene_NNN.jpg`` by each scene's first object; image name -> class."""
    labels = {}
    for i, scene in enumerate(items):
        label = scene.objects[0].label
        (folder / label).mkdir(parents=True, exist_ok=True)
        name = f"scene_{i:03d}.jpg"
        scene.image.save(folder / label / name, format="JPEG", quality=95)
        labels[f"{label}/{name}"] = label
    return labels


def zip_folder(folder: Path, archive: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, prefix + path.relative_to(folder).as_posix())
    return archive


def targz_folder(folder: Path, archive: Path, prefix: str = "") -> Path:
    with tarfile.open(archive, "w:gz") as tf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                tf.add(path, prefix + path.relative_to(folder).as_posix())
    return archive


def tree(root: Path) -> list[str]:
    """Every path under ``root`` (files and folders), to compare a data folder before and after."""
    if not root.exists():
        return []
    return sorted(p.relative_to(root).as_posix() + ("/" if p.is_dir() else "") for p in root.rglob("*"))
