"""The demo model's example images: held-out generated scenes, a wide scene and a large poster, with ground truth.

They live in ``models/demo/examples/`` (a non-integer folder, which model servers ignore). The gateway's integration
tests POST them and expect detections matching ``ground_truth.json`` (IoU >= 0.5, right labels).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.files import staging_dir
from services.training.evaluate import count_matches
from services.training.synthetic import Scene, generate_scene, generate_scenes
from services.vision.boxes import Detection

GROUND_TRUTH_FILE = "ground_truth.json"
POSTER_FILE = "poster.jpg"


@dataclass(frozen=True, slots=True)
class ExampleSpec:
    """Which examples to make: ``scenes`` square scenes of ``seed`` (first half PNG, second half JPEG), one wide
    non-square scene (letterboxed by the gateway), and a ``poster_size`` poster whose objects are only found by
    tiling."""

    seed: int = 20_251_121
    scenes: int = 6
    poster_size: tuple[int, int] = (1600, 1000)
    poster_objects: int = 24
    jpeg_quality: int = 92


def example_scenes(spec: ExampleSpec) -> dict[str, Scene]:
    """The example scenes by file name (deterministic for a spec)."""
    out: dict[str, Scene] = {}
    for i, scene in enumerate(generate_scenes(spec.seed, spec.scenes)):
        out[f"scene-{i + 1}.{'png' if i < spec.scenes // 2 else 'jpg'}"] = scene
    rng = np.random.default_rng([spec.seed, 1_000])
    # 480x360 letterboxes to 320x240 (scale 2/3): objects drawn 21-54 px stay 14-36 px on the canvas.
    out["wide.jpg"] = generate_scene(rng, width=480, height=360, objects=(3, 6), object_size=(21, 54))
    width, height = spec.poster_size
    rng = np.random.default_rng([spec.seed, 2_000])
    out[POSTER_FILE] = generate_scene(
        rng,
        width=width,
        height=height,
        objects=(spec.poster_objects, spec.poster_objects),
        object_size=(16, 32),
        clutter=width * height // 10_000,
    )
    return out


def ground_truth(scene: Scene) -> dict[str, object]:
    """One file's entry in ``ground_truth.json``."""
    width, height = scene.image.size
    return {
        "width": width,
        "height": height,
        "objects": [{"label": o.label, "class_id": o.class_id, "box": o.box.to_dict()} for o in scene.objects],
    }


def write_examples(folder: Path, spec: ExampleSpec) -> dict[str, Scene]:
    """Write the examples and ``ground_truth.json`` to ``folder``, replacing it whole (written aside, renamed)."""
    scenes = example_scenes(spec)
    with staging_dir(folder) as staging:
        for name, scene in scenes.items():
            if name.endswith(".png"):
                scene.image.save(staging / name, format="PNG", optimize=True)
            else:
                scene.image.save(staging / name, format="JPEG", quality=spec.jpeg_quality)
        truth = {name: ground_truth(scene) for name, scene in scenes.items()}
        (staging / GROUND_TRUTH_FILE).write_text(json.dumps(truth, indent=1) + "\n")
    return scenes


@dataclass(frozen=True, slots=True)
class ExampleCheck:
    """How a model did on one example at a score threshold."""

    name: str
    objects: int
    found: int
    false_positives: int


def check_examples(
    folder: Path, scenes: dict[str, Scene], detect: Callable[[Path], list[Detection]]
) -> list[ExampleCheck]:
    """Run ``detect`` (example file -> detections in pixels above the threshold) on every example in ``folder``."""
    checks = []
    for name, scene in scenes.items():
        truth = [(o.class_id, o.box) for o in scene.objects]
        found, extra = count_matches(truth, detect(folder / name))
        checks.append(ExampleCheck(name, len(truth), found, extra))
    return checks
