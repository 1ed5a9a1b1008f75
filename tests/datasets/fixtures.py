"""Tiny labelled datasets on disk, made from seeded synthetic scenes, in every import format (TensorFlow-free).

Used by ``tests/datasets`` and ``tests/tf/datasets``; scenes are 96-128 px so a dozen images import in moments.
"""

from __future__ import annotations

import csv
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from services.store.datasets.annotations import ObjectAnnotation
from services.store.datasets.voc import write_voc
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
        width, height = scene.image.size
        write_voc(folder / "annotations" / f"scene_{i:03d}.xml", name, width, height, objects, folder="images")
        names.append(name)
    return names


def write_voc_with_label_map(folder: Path, items: list[Scene], classes: list[str]) -> None:
    """``images/sNNN.jpg``, ``annotations/sNNN.xml`` and ``label_map.pbtxt`` with ``classes`` as ids 1..K (a fixed
    class order, so a model's outputs mean the same classes as the dataset's)."""
    (folder / "images").mkdir(parents=True)
    (folder / "annotations").mkdir()
    for i, scene in enumerate(items):
        scene.image.save(folder / "images" / f"s{i:03d}.jpg", quality=95)
        objects = [ObjectAnnotation(o.label, o.box) for o in scene.objects]
        width, height = scene.image.size
        write_voc(folder / "annotations" / f"s{i:03d}.xml", f"s{i:03d}.jpg", width, height, objects, folder="images")
    (folder / "label_map.pbtxt").write_text(
        "".join(f'item {{ id: {i + 1} name: "{c}" }}\n' for i, c in enumerate(classes))
    )


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


def road_image(rng: np.random.Generator, size: int = 96) -> Image.Image:
    """A stand-in for a road photo: asphalt grey with a dashed lane line at a random place and tilt."""
    grey = int(rng.integers(70, 120))
    image = Image.fromarray(np.clip(grey + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    x, tilt = int(rng.integers(20, size - 20)), int(rng.integers(-25, 25))
    for y in range(0, size, 16):
        draw.line([(x + tilt * y / size, y), (x + tilt * (y + 9) / size, y + 9)], fill=(235, 235, 235), width=3)
    return image


def field_image(rng: np.random.Generator, size: int = 96) -> Image.Image:
    """A stand-in for anything but a road: grass-green noise with patches of soil."""
    base = np.array([60 + rng.integers(0, 40), 110 + rng.integers(0, 50), 40 + rng.integers(0, 30)])
    image = Image.fromarray(np.clip(base + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 6))):
        cx, cy, r = int(rng.integers(0, size)), int(rng.integers(0, size)), int(rng.integers(5, 15))
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(110, 80, 50))
    return image


def write_roads_dataset(folder: Path, per_class: int = 16, *, seed: int = 0) -> None:
    """Folder per class, ``road/`` and ``not-road/``: the MobileNet road / not-road classifier's use case."""
    rng = np.random.default_rng(seed)
    for label, make in (("road", road_image), ("not-road", field_image)):
        (folder / label).mkdir(parents=True)
        for i in range(per_class):
            make(rng).save(folder / label / f"{label}-{i:03d}.png")


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
