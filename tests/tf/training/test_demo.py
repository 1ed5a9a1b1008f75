"""The demo model: the committed one keeps the contract and finds its examples; the recipe runs end to end."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import tensorflow as tf

from services.training.demo import QUICK, detect_example, evaluate_export, make_demo_model
from services.training.demo_examples import GROUND_TRUTH_FILE, ExampleSpec
from services.training.evaluate import count_matches
from services.training.export import METADATA_FILE, WARMUP_FILE
from services.training.synthetic import CLASSES
from services.vision.boxes import Box

DEMO = Path(__file__).resolve().parents[3] / "models" / "demo"


@pytest.fixture(scope="module")
def demo():  # type: ignore[no-untyped-def]
    return tf.saved_model.load(str(DEMO / "1"))


def test_committed_demo_model_keeps_the_contract(demo) -> None:  # type: ignore[no-untyped-def]
    assert set(demo.signatures) >= {"serving_default", "detect_encoded", "labels"}
    spec = demo.signatures["serving_default"].structured_input_signature[1]["images"]
    assert spec.shape.as_list() == [None, 320, 320, 3]
    names = demo.signatures["labels"](batch=tf.constant([0]))["names"].numpy()
    assert [n.decode() for n in names[0]] == list(CLASSES)
    assert (DEMO / "1" / "assets.extra" / WARMUP_FILE).is_file()
    info = json.loads((DEMO / "1" / "assets.extra" / METADATA_FILE).read_text())
    assert info["detector"]["input_size"] == 320
    size = sum(p.stat().st_size for p in (DEMO / "1").rglob("*") if p.is_file())
    assert size < 6_000_000


def test_committed_demo_model_finds_every_example_object(demo) -> None:  # type: ignore[no-untyped-def]
    truth = json.loads((DEMO / "examples" / GROUND_TRUTH_FILE).read_text())
    assert len(truth) >= 7
    for name, entry in truth.items():
        objects = [(o["class_id"], Box(**o["box"])) for o in entry["objects"]]
        found = detect_example(demo, 320, DEMO / "examples" / name)
        matched, _ = count_matches(objects, found)
        assert matched == len(objects), f"{name}: {matched} of {len(objects)} found"


@pytest.mark.slow
def test_committed_demo_model_ap_on_fresh_scenes(demo) -> None:  # type: ignore[no-untyped-def]
    ap, precision, recall = evaluate_export(demo, replace(QUICK, eval_seed=4242, eval_scenes=200))
    assert ap.mean >= 0.9, ap.per_class
    assert precision >= 0.9 and recall >= 0.8


def test_recipe_runs_end_to_end(tmp_path: Path) -> None:
    recipe = replace(
        QUICK,
        train_scenes=16,
        eval_scenes=8,
        train=replace(QUICK.train, epochs=1, steps_per_epoch=2, batch_size=4, train_size=96, warmup_steps=1),
        examples=ExampleSpec(scenes=2, poster_size=(700, 400), poster_objects=4),
        speed_seconds=0.1,
    )
    result = make_demo_model(tmp_path / "demo", recipe)
    assert result.version_dir == tmp_path / "demo" / "1"
    assert (result.version_dir / "saved_model.pb").is_file()
    names = {p.name for p in (tmp_path / "demo" / "examples").iterdir()}
    assert names == {"scene-1.png", "scene-2.jpg", "wide.jpg", "poster.jpg", GROUND_TRUTH_FILE}
    readme = (tmp_path / "demo" / "README.md").read_text()
    assert "AP@0.5" in readme and "poster.jpg" in readme
    info = json.loads((result.version_dir / "assets.extra" / METADATA_FILE).read_text())
    assert info["demo"]["results"]["map50"] == pytest.approx(result.ap.mean, nan_ok=True)
    # A second run replaces version 1 rather than adding version 2.
    make_demo_model(tmp_path / "demo", recipe)
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == ["1", "README.md", "examples"]
