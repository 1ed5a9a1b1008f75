"""The hostile dataset corpus (``tests/data/hostile/datasets/``, see its README): cases as data, made into folders
and archives by these helpers. TensorFlow-free."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.training.synthetic import generate_scenes

CORPUS = Path(__file__).resolve().parents[1] / "data" / "hostile" / "datasets"


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    folder: Path
    spec: dict[str, Any]

    @property
    def format(self) -> str:
        return str(self.spec["format"])


def dataset_cases() -> list[Case]:
    """Every case folder of the corpus, by name."""
    return [
        Case(p.name, p, json.loads((p / "case.json").read_text()))
        for p in sorted(CORPUS.iterdir())
        if (p / "case.json").is_file()
    ]


def scene_image(path: str, width: int, height: int, dest: Path) -> None:
    """A seeded synthetic photo of ``width`` x ``height`` at ``dest``, different for every ``path``."""
    seed = int.from_bytes(hashlib.sha256(path.encode()).digest()[:4], "big")
    [scene] = generate_scenes(seed, 1, width=width, height=height, objects=(2, 4), object_size=(30, 90), clutter=6)
    dest.parent.mkdir(parents=True, exist_ok=True)
    scene.image.save(dest, format="JPEG" if dest.suffix.lower() in (".jpg", ".jpeg") else "PNG", quality=90)


def build_case(case: Case, dest: Path) -> Path:
    """The case as a dataset folder: its annotation files, its generated images and CSV files; ``dest``."""
    shutil.copytree(case.folder, dest, ignore=shutil.ignore_patterns("case.json"))
    for rel, (width, height) in case.spec["images"].items():
        scene_image(rel, width, height, dest / rel)
    for rel, rows in case.spec.get("csv_rows", {}).items():
        with (dest / rel).open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"])
            writer.writerows(rows)
    return dest


def archive_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads((CORPUS / "archives.json").read_text())["cases"]
    return cases


def entry_name(parts: list[dict[str, Any]]) -> str:
    return "".join(str(p["text"]) * int(p.get("times", 1)) for p in parts)


def build_archive(case: dict[str, Any], dest: Path, *, with_dataset: Path | None = None) -> Path:
    """A zip of the case's hostile entries (each a real JPEG), after the files of ``with_dataset`` if given."""
    image = dest.with_suffix(".jpg")
    scene_image(case["name"], 640, 480, image)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        if with_dataset is not None:
            for path in sorted(with_dataset.rglob("*")):
                if path.is_file():
                    zf.write(path, path.relative_to(with_dataset).as_posix())
        for parts in case["entries"]:
            zf.writestr(entry_name(parts), image.read_bytes())
    image.unlink()
    return dest
