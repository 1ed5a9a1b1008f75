"""Big images with small objects, end to end: a generated poster dataset uploaded as a zip through the gateway, a
detector trained on native-scale crops (``views: tiles``, a tiny budget, from the demo model's weights), evaluated and
exported by real RQ workers; the version's ``spotter.json`` and ``GET /v1/models/{name}`` say ``tiles``, and the
gateway's answers on the held-out posters (``tile=auto``) are the evaluation's detections for the same images.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from services.processes import ServerProcess
from services.training.synthetic import CLASSES, generate_posters
from services.vision.boxes import Box, iou
from tests.datasets.fixtures import write_voc_with_label_map
from tests.gateway.conftest import DEMO
from tests.gateway.helpers import RunningGateway
from tests.jobs.support import KEY, running_job_stack, upload, wait_job, zip_folder
from tests.support.modelserver import ModelServerHandle

pytestmark = pytest.mark.integration

TRAIN = {
    "type": "train",
    "dataset": "posters",
    "views": "tiles",
    "input_size": 128,  # the demo's weights fit any canvas (fully convolutional): small views, cheap steps
    "background_ratio": 0.5,
    "init_from_model": "demo",
    "epochs": 1,
    "steps_per_epoch": 3,
    "batch_size": 4,
    "max_detections": 20,
    "learning_rate": 0.0005,
    "patience": 0,
    "evaluate": True,
    "export": {"model": "posters"},
}
FLOOR = 0.1  # detections compared from this score (a margin either side absorbs float noise at the edge)


@dataclass
class Stack:
    base: Path
    http: httpx.Client
    gateway: RunningGateway
    model_server: ModelServerHandle
    worker: ServerProcess


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("tiles")
    shutil.copytree(DEMO / "1", base / "models" / "demo" / "1")
    with running_job_stack(base, ("worker-tiles",), http_timeout=60) as running:
        yield Stack(base, running.http, running.gateway, running.model_server, running.workers[0])


def _matched(ours: list[dict], theirs: list[dict]) -> int:
    """How many of ``ours`` (from ``FLOOR`` + margin) have a twin in ``theirs``: same class, same box, same score;
    fails on one that has none."""
    count = 0
    for d in ours:
        if d["score"] < FLOOR + 0.01:
            continue
        box = Box(**d["box"])
        twins = [
            t
            for t in theirs
            if t["class_id"] == d["class_id"]
            and iou(box, Box(**t["box"])) > 0.98
            and abs(t["score"] - d["score"]) < 0.01
        ]
        assert twins, f"{d} has no twin among {theirs}"
        count += 1
    return count


@pytest.mark.timeout(1800)  # three TensorFlow jobs (train, evaluate, export) each start and trace their graphs
def test_tiles_are_trained_recorded_evaluated_and_served_alike(stack: Stack) -> None:
    http = stack.http
    posters = list(generate_posters(2024, 9, width=600, height=400, clutter=40))
    write_voc_with_label_map(stack.base / "voc", posters, list(CLASSES))
    job = upload(http, "posters", "voc", zip_folder(stack.base / "voc"), split="0.67")
    assert wait_job(http, job, timeout=300, workers=[stack.worker])["state"] == "finished"

    submitted = http.post("/v1/jobs", json=TRAIN, headers=KEY)
    assert submitted.status_code == 202, submitted.text
    train_id, evaluate_id, export_id = (j["id"] for j in submitted.json()["jobs"])
    train = wait_job(http, train_id, timeout=900, workers=[stack.worker])
    assert train["state"] == "finished", train
    assert train["result"]["views"] == "tiles"
    evaluate = wait_job(http, evaluate_id, timeout=600, workers=[stack.worker])
    export = wait_job(http, export_id, timeout=600, workers=[stack.worker])
    assert evaluate["state"] == "finished" and export["state"] == "finished", (evaluate, export)
    assert export["result"]["gate"]["views"] == "tiles"

    # The export records how it sees an image, and the gateway shows it.
    recorded = json.loads((stack.base / "models" / "posters" / "1" / "assets.extra" / "spotter.json").read_text())
    assert recorded["views"] == "tiles" and recorded["crop_size"] == 128
    low, high = recorded["object_size_px"]
    assert 18 <= low <= high <= 46
    stack.model_server.wait_available("posters", 1, timeout=60)
    version = http.get("/v1/models/posters").json()["versions"][0]
    assert (version["views"], version["crop_size"], version["object_size_px"]) == ("tiles", 128, [low, high])
    assert http.get("/v1/models/demo").json()["versions"][0]["views"] == "tiles"

    # The report says which views were used; its detections are what the gateway serves for the same images.
    report = http.get(f"/v1/jobs/{evaluate_id}/artifacts/evaluation.json", headers=KEY).json()
    assert report["views"]["views"] == "tiles" and report["views"]["views_per_image"] > 1
    per_image = http.get(f"/v1/jobs/{evaluate_id}/artifacts/detections.json", headers=KEY).json()
    assert len(per_image) == report["images"] >= 2
    compared = 0
    for entry in per_image:
        data = (stack.base / "voc" / entry["filename"]).read_bytes()  # named as in the archive: images/sNNN.jpg
        answer = http.post(
            "/v1/models/posters:detect?tile=auto&min_score=0&max_detections=1000",
            content=data,
            headers={"Content-Type": "image/jpeg"},
        )
        assert answer.status_code == 200, answer.text
        served = [d for d in answer.json()["detections"] if d["score"] >= FLOOR - 0.01]
        evaluated = [d for d in entry["detections"] if d["score"] >= FLOOR - 0.01]
        compared += _matched(served, evaluated) + _matched(evaluated, served)
    assert compared > 0, "no detection to compare: the test would prove nothing"
