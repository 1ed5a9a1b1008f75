"""The demo model through the gateway: its example images give the objects of ``ground_truth.json``.

Matching is the project's own (``services.training.evaluate.count_matches``: same class, IoU >= 0.5, one to one).
The poster is large with small objects: they are found with tiling (``tile=auto``) and mostly missed without it.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from services.training.evaluate import count_matches
from services.vision.boxes import Box, Detection
from tests.gateway.conftest import DEMO
from tests.gateway.helpers import RunningGateway, gateway_settings, running_gateway
from tests.support.modelserver import ModelServerHandle

pytestmark = pytest.mark.integration

EXAMPLES = DEMO / "examples"
POSTER = "poster.jpg"
MEDIA_TYPES = {".jpg": "image/jpeg", ".png": "image/png"}


@pytest.fixture(scope="module")
def truth() -> dict[str, dict]:
    if not (DEMO / "1" / "saved_model.pb").exists() or not (EXAMPLES / "ground_truth.json").exists():
        pytest.fail("models/demo/1 and models/demo/examples/ are missing: run `make demo-model`")
    return json.loads((EXAMPLES / "ground_truth.json").read_text())


@pytest.fixture(scope="module")
def gateway(model_server: ModelServerHandle, tiny_models: Path, truth: dict) -> Iterator[RunningGateway]:
    settings = gateway_settings(model_server.grpc_target, model_config_file=tiny_models / "models.config")
    with running_gateway(settings) as running:
        yield running


def detect(gateway: RunningGateway, name: str, query: str = "") -> dict:
    path = EXAMPLES / name
    response = httpx.post(
        f"{gateway.url}/v1/models/demo:detect?{query}",
        content=path.read_bytes(),
        headers={"Content-Type": MEDIA_TYPES[path.suffix]},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    return response.json()


def matches(entry: dict, answer: dict) -> tuple[int, int]:
    """(objects found, detections that match nothing)."""
    objects = [(o["class_id"], Box(**o["box"])) for o in entry["objects"]]
    found = [Detection(d["label"], d["class_id"], d["score"], Box(**d["box"])) for d in answer["detections"]]
    return count_matches(objects, found)


def test_the_gateway_finds_what_the_model_found_in_process(gateway: RunningGateway, truth: dict) -> None:
    """Fidelity: ``make demo-model`` recorded what the SavedModel itself found on each example (TensorFlow in
    process, same letterbox and tiling); through the model server and the gateway the answers must agree."""
    recorded = json.loads((DEMO / "1" / "assets.extra" / "spotter.json").read_text())["demo"]["results"]["examples"]
    report, worse = [], []
    for check in recorded:
        found, extra = matches(truth[check["name"]], detect(gateway, check["name"]))
        report.append(
            f"{check['name']}: gateway {found} found {extra} extra, in process {check['found']} / "
            f"{check['false_positives']}"
        )
        if found < check["found"] - 1 or extra > check["false_positives"] + 1:
            worse.append(check["name"])
    assert not worse, "\n".join(report)


def test_every_example_scene_gives_its_ground_truth(gateway: RunningGateway, truth: dict) -> None:
    names = sorted(n for n in truth if n != POSTER)
    assert names, "ground_truth.json lists no scenes"
    report = []
    total = found_total = extra_total = 0
    for name in names:
        answer = detect(gateway, name)
        entry = truth[name]
        assert (answer["width"], answer["height"]) == (entry["width"], entry["height"]), name
        labels = {o["class_id"]: o["label"] for o in entry["objects"]}
        for d in answer["detections"]:
            assert labels.get(d["class_id"], d["label"]) == d["label"], f"{name}: label names differ from the truth"
        found, extra = matches(entry, answer)
        report.append(f"{name}: {found}/{len(entry['objects'])} found, {extra} extra")
        total, found_total, extra_total = total + len(entry["objects"]), found_total + found, extra_total + extra
    assert found_total >= 0.9 * total, "\n".join(report)
    assert extra_total <= 0.1 * total + 1, "\n".join(report)


def test_the_poster_needs_tiling(gateway: RunningGateway, truth: dict) -> None:
    entry = truth[POSTER]
    objects = len(entry["objects"])
    tiled = detect(gateway, POSTER)  # tile=auto: the poster is far larger than the model's input
    whole = detect(gateway, POSTER, "tile=off")
    found_tiled, _ = matches(entry, tiled)
    found_whole, _ = matches(entry, whole)
    assert found_tiled >= 0.8 * objects, f"tiled: {found_tiled}/{objects}"
    assert found_whole <= 0.5 * objects, f"without tiles: {found_whole}/{objects}"


def test_annotate_draws_on_an_example(gateway: RunningGateway, truth: dict) -> None:
    name = sorted(n for n in truth if n.endswith(".jpg") and n != POSTER)[0]
    response = httpx.post(
        f"{gateway.url}/v1/models/demo:annotate",
        content=(EXAMPLES / name).read_bytes(),
        headers={"Content-Type": "image/jpeg", "Accept": "image/png"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    drawn = Image.open(io.BytesIO(response.content))
    assert drawn.format == "PNG"
    assert drawn.size == (truth[name]["width"], truth[name]["height"])


def test_the_demo_describes_itself(gateway: RunningGateway) -> None:
    model = httpx.get(f"{gateway.url}/v1/models/demo", timeout=30).json()
    available = [v for v in model["versions"] if v["state"] == "AVAILABLE"]
    assert available and available[-1]["kind"] == "detector"
    assert available[-1]["input_size"] > 0
    assert available[-1]["labels"], "the demo carries its own labels"
