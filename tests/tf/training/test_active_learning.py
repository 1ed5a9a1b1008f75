"""Active learning in process, on generated data: the demo detector meets scenes whose objects are larger than it was
trained on (40-70 px instead of 14-40), a small boxed set of them, and a pool of the same scenes labelled only by
class folder. One round must add accepted examples whose every box is right (IoU >= 0.5 with a true object of its
class), make a new dataset and model version, and leave validation AP no lower than before; what it does not accept
goes to review as JSON, a contact sheet and a VOC folder that imports again."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from services.jobs.params import ActiveLearningParams
from services.store.checks import check_active_learning
from services.store.datasets.annotations import SourceFormat
from services.store.datasets.request import ImportRequest
from services.store.datasets.storage import DatasetStore
from services.store.datasets.validate import ValidImage
from services.training import active_learning
from services.training.datasets.derive import read_version_images
from services.training.datasets.importer import import_dataset
from services.training.selection import detection_doubt
from services.training.synthetic import CLASSES, Scene, generate_scenes
from services.vision.boxes import Box, Detection, iou
from tests.datasets.fixtures import write_voc_with_label_map
from tests.tf.training.test_pipeline import DEMO, Reporter

SIZE = 320
SCENES: dict[str, Any] = {"width": SIZE, "height": SIZE, "object_size": (40, 70), "clutter": 8}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``models/shapes/1`` (the demo), dataset ``shapes`` (40 boxed scenes: 20 train, 20 validation), and ``pool/``:
    8 single-class scenes per class folder, 4 unlabelled scenes in its root, one mislabelled scene (squares in
    ``circle/``), an unknown class folder and an unreadable file. ``truth`` holds every pool scene's true boxes."""
    base = tmp_path_factory.mktemp("al")
    models, data = base / "models", base / "data"
    shutil.copytree(DEMO, models / "shapes" / "1")
    write_voc_with_label_map(base / "voc", list(generate_scenes(11, 40, objects=(1, 3), **SCENES)), list(CLASSES))
    import_dataset(
        ImportRequest(
            name="shapes",
            format=SourceFormat.VOC,
            source=base / "voc",
            split=0.5,
            label_map=base / "voc" / "label_map.pbtxt",
        ),
        DatasetStore(data),
    )
    pool = data / "pool"
    truth: dict[str, list[tuple[str, Box]]] = {}

    def save(name: str, scene: Scene) -> None:
        (pool / name).parent.mkdir(parents=True, exist_ok=True)
        scene.image.save(pool / name, quality=95)
        truth[name] = [(o.label, o.box) for o in scene.objects]

    for k, label in enumerate(CLASSES):
        for i, scene in enumerate(generate_scenes(21 + k, 8, objects=(1, 2), classes=[label], **SCENES)):
            save(f"{label}/{label}_{i:02d}.jpg", scene)
    for i, scene in enumerate(generate_scenes(31, 4, objects=(1, 1), **SCENES)):
        save(f"u_{i:02d}.jpg", scene)
    save("circle/actually_squares.jpg", next(generate_scenes(41, 1, objects=(2, 2), classes=["square"], **SCENES)))
    (pool / "giraffe").mkdir()
    for i, scene in enumerate(generate_scenes(51, 2, **SCENES)):
        scene.image.save(pool / "giraffe" / f"g{i}.jpg")
    (pool / "circle" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return {"data": data, "models": models, "truth": truth}


def test_one_round_adds_right_boxes_publishes_a_version_and_does_not_lower_ap(
    world: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data, models = world["data"], world["models"]
    params = check_active_learning(
        ActiveLearningParams(
            model="shapes",
            dataset="shapes",
            pool="pool",
            rounds=1,
            epochs=1,
            steps_per_epoch=20,
            batch_size=8,
            train_size=192,
            warmup_steps=0,
            seed=1,
        ),
        data,
        models,
    )
    assert params.version == 1 and params.dataset_version == 1 and params.run_prefix
    reporter = Reporter(tmp_path, "al")
    with caplog.at_level(logging.INFO):
        result = active_learning.run(params, reporter, data, models)
    report = json.loads((reporter.artifacts / "active_learning.json").read_text())
    print(json.dumps({k: report[k] for k in ("start", "rounds", "stopped")}, indent=1))  # the measured table

    (entry,) = report["rounds"]
    assert entry["state"] == "published" and entry["model_version"] == 2 and entry["dataset_version"] == 2
    assert entry["accepted"] > 0 and entry["accepted"] + entry["review"] == entry["predicted"] == 37
    assert result["model_version"] == 2 and (models / "shapes" / "2" / "saved_model.pb").is_file()

    # The bad part of the pool is listed and left out; the rest was used.
    problems = json.loads((reporter.artifacts / "problems.json").read_text())["problems"]
    codes = {(p["code"], p["file"]) for p in problems}
    assert ("unknown_class", "giraffe/g0.jpg") in codes and ("unknown_class", "giraffe/g1.jpg") in codes
    assert any(file == "circle/broken.jpg" for _, file in codes)

    # Every accepted box is a true object of its class; the new version is the old one plus them, validation as it was.
    store = DatasetStore(data)
    old, new = store.manifest("shapes", 1), store.manifest("shapes", 2)
    images = read_version_images(store.path("shapes", 2), new)
    added = [i for i in images["train"] if i.filename.startswith("pool/")]
    assert len(added) == entry["accepted"] and new.counts["train"].images == old.counts["train"].images + len(added)
    assert new.counts["validation"] == old.counts["validation"] and new.source.derived_from == "shapes/1"
    for image in added:
        true = world["truth"][image.filename.removeprefix("pool/")]
        assert image.objects
        for obj in image.objects:
            best = max((iou(obj.box, box) for label, box in true if label == obj.label), default=0.0)
            assert best >= 0.5, (image.filename, obj, true)
    assert not any(i.filename.endswith("actually_squares.jpg") for i in added)

    # Validation AP after the round is no lower than before (same validation split, measured the same way).
    assert entry["map50_after"] >= entry["map50_before"] == report["start"]["map50"]
    assert set(entry["ap50_after"]) == set(CLASSES)

    # Review: JSON, a contact sheet and a VOC folder LabelImg opens, which imports back as it is.
    review = reporter.artifacts / "round-1" / "review"
    listed = json.loads((review / "review.json").read_text())
    assert len(listed) == entry["review"] >= 1
    mislabelled = next(r for r in listed if r["filename"] == "circle/actually_squares.jpg")
    assert mislabelled["reason"] == "disagreement" and mislabelled["candidates"][0]["label"] == "square"
    assert (review / "contact_sheet.png").read_bytes()[:4] == b"\x89PNG"
    assert len(list((review / "voc" / "annotations").glob("*.xml"))) == entry["review"]
    back = import_dataset(
        ImportRequest(name="reviewed", format=SourceFormat.VOC, source=review / "voc", split=0.5), store
    )
    assert sum(c.images for c in back.manifest.counts.values()) == entry["review"]

    # The report: per class counts, a table in the log, a plot.
    assert (
        sum(c["accepted"]["images"] for c in entry["per_class"].values())
        >= entry["accepted"] - entry["unlabelled"]["accepted"]
    )
    assert entry["per_class"]["circle"]["labelled_before"]["images"] == old.counts["train"].per_class["circle"].images
    assert any("labelled before" in r.getMessage() and "AP@0.5 after" in r.getMessage() for r in caplog.records)
    assert (reporter.artifacts / "rounds.png").read_bytes()[:4] == b"\x89PNG"


def test_a_budget_sends_the_most_doubtful_pool_images_to_review(world: dict[str, Any], tmp_path: Path) -> None:
    """The demo detector's real detections on the pool; scores are capped below min_score so that nothing is accepted
    (acceptance is not what this test is about) and the round ends after review, before any training."""
    data, models = world["data"], world["models"]
    params = check_active_learning(
        ActiveLearningParams(
            model="shapes",
            version=1,
            dataset="shapes",
            dataset_version=1,
            pool="pool",
            rounds=1,
            min_score=0.995,
            unlabelled_min_score=0.995,
            budget=5,
            selection="uncertainty",
            seed=3,
        ),
        data,
        models,
    )
    local = active_learning.local_predictor(models, "shapes", CLASSES, 8)
    seen: dict[str, list[Detection]] = {}

    def predict(images: Sequence[ValidImage], version: int) -> list[list[Detection]]:
        capped = [[replace(d, score=min(d.score, 0.99)) for d in found] for found in local(images, version)]
        seen.update({i.filename: found for i, found in zip(images, capped, strict=True)})
        return capped

    reporter = Reporter(tmp_path, "al-budget")
    result = active_learning.run(params, reporter, data, models, predict=predict)
    report = json.loads((reporter.artifacts / "active_learning.json").read_text())
    (entry,) = report["rounds"]
    assert entry["state"] == "nothing_accepted" and result["model_version"] == 1
    assert (entry["accepted"], entry["review"], entry["not_sent"]) == (0, 5, entry["predicted"] - 5)

    # The five sent are the five most in doubt by their own detections (unless one was a near-duplicate).
    selection = entry["selection"]
    chosen = [c["filename"] for c in selection["chosen"]]
    skipped = {s["filename"] for s in selection["near_duplicates_skipped"]}
    doubt = {name: detection_doubt(found, params.decision_score) for name, found in seen.items()}
    ranked = [n for n in sorted(doubt, key=lambda n: -doubt[n]) if n not in skipped]
    assert [doubt[n] for n in chosen] == pytest.approx(sorted((doubt[n] for n in ranked), reverse=True)[:5])
    assert [c["doubt"] for c in selection["chosen"]] == pytest.approx([doubt[n] for n in chosen], abs=1e-6)
    assert len(seen) == entry["predicted"] == selection["candidates"]
    listed = json.loads((reporter.artifacts / "round-1" / "review" / "review.json").read_text())
    assert [r["filename"] for r in listed] == chosen
    assert len(list((reporter.artifacts / "round-1" / "review" / "voc" / "images").iterdir())) == 5
