"""Spotter end to end through its APIs: import generated datasets, train a detector and a classifier through real
RQ workers on the real Redis (each chained with evaluate and export), see the real model server serve the new
versions with no restart, and detect and classify through the gateway on held-out images.

Two workers run the two chains side by side (a job's TensorFlow start-up and graph tracing are mostly one core's
work). Sizes are small (128 px scenes, alpha 0.35, 100 training steps): the test checks that everything connects
and that training learns, and prints what it measured (AP, training time).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from services.processes import ServerProcess
from services.training.synthetic import generate_scenes
from services.vision.boxes import Box, iou
from tests.datasets.fixtures import road_image, scenes, write_roads_dataset, write_voc_dataset
from tests.gateway.helpers import RunningGateway, encode
from tests.jobs.support import KEY, running_job_stack, upload, wait_job, zip_folder
from tests.support.modelserver import ModelServerHandle

pytestmark = pytest.mark.integration

SIZE = 128
DETECTOR = {
    "type": "train",
    "dataset": "shapes",
    "input_size": SIZE,
    "alpha": 0.35,
    "epochs": 4,
    "steps_per_epoch": 25,
    "batch_size": 8,
    "learning_rate": 0.004,
    "evaluate": True,
    "export": {"model": "shapes"},
}
CLASSIFIER = {
    "type": "train",
    "dataset": "roads",
    "input_size": 64,
    "weights": "none",
    "epochs": 4,
    "steps_per_epoch": 8,
    "batch_size": 8,
    "learning_rate": 0.01,
    "patience": 0,
    "export": {"model": "roads"},
}


@dataclass
class Stack:
    base: Path
    http: httpx.Client
    gateway: RunningGateway
    model_server: ModelServerHandle
    workers: list[ServerProcess]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("e2e")
    with running_job_stack(base, ("worker-1", "worker-2")) as running:
        yield Stack(base, running.http, running.gateway, running.model_server, running.workers)


def test_train_evaluate_export_then_serve_detect_and_classify(stack: Stack) -> None:
    http, workers = stack.http, stack.workers
    write_voc_dataset(stack.base / "voc", scenes(count=60, size=SIZE))
    write_roads_dataset(stack.base / "folders", per_class=16)
    imports = [
        upload(http, "shapes", "voc", zip_folder(stack.base / "voc"), split="0.8"),
        upload(http, "roads", "folders", zip_folder(stack.base / "folders"), split="0.75"),
    ]
    for job_id in imports:
        assert wait_job(http, job_id, timeout=180, workers=workers)["state"] == "finished"
    listed = http.get("/v1/jobs?type=import", headers=KEY).json()["jobs"]
    assert sorted(j["id"] for j in listed) == sorted(imports)

    started = time.monotonic()
    detector = http.post("/v1/jobs", json=DETECTOR, headers=KEY)
    classifier = http.post("/v1/jobs", json=CLASSIFIER, headers=KEY)
    assert detector.status_code == classifier.status_code == 202, (detector.text, classifier.text)
    train_id, evaluate_id, export_id = (j["id"] for j in detector.json()["jobs"])

    # While the detector trains, its record shows the epoch, the step and the losses so far.
    running = wait_job(http, train_id, timeout=300, workers=workers, until=("started",))
    while running["state"] == "started" and "epoch" not in running["progress"]:
        time.sleep(0.5)
        running = http.get(f"/v1/jobs/{train_id}", headers=KEY).json()
    assert running["state"] == "finished" or (
        {"percent", "epoch", "epochs", "step", "steps"} <= set(running["progress"]) and "loss" in running["metrics"]
    ), running

    train = wait_job(http, train_id, timeout=600, workers=workers)
    assert train["state"] == "finished", train
    evaluate = wait_job(http, evaluate_id, timeout=300, workers=workers)
    export = wait_job(http, export_id, timeout=300, workers=workers)
    chain_seconds = time.monotonic() - started
    assert evaluate["state"] == "finished" and export["state"] == "finished", (evaluate, export)
    result = train["result"]
    assert result["epochs_done"] == 4 and result["kind"] == "detector" and train["progress"]["percent"] == 100.0
    names = {a["name"] for a in train["artifacts"]}
    assert {"training_curve.png", "metrics.json", "log.txt", "result.json"} <= names
    curve = http.get(f"/v1/jobs/{train_id}/artifacts/training_curve.png", headers=KEY)
    assert curve.status_code == 200 and curve.content[:4] == b"\x89PNG"

    report = evaluate["result"]
    assert report["map50_coco101"] == report["map50_pycocotools"]  # ours equals pycocotools on these detections
    assert report["map50"] > 0.05, report  # 100 steps learn something (0.70 measured on this machine)
    assert "pr_curve.png" in {a["name"] for a in evaluate["artifacts"]}
    published = export["result"]
    assert (published["model"], published["version"], published["gate"]["passed"]) == ("shapes", 1, True)

    # The model server picks the new version up without a restart; the gateway serves it with its own labels.
    stack.model_server.wait_available("shapes", 1, timeout=60)
    described = http.get("/v1/models/shapes").json()
    assert [label["name"] for label in described["versions"][0]["labels"]] == ["circle", "cross", "square", "triangle"]
    held_out = next(generate_scenes(4242, 1, width=SIZE, height=SIZE, objects=(3, 4), object_size=(14, 30), clutter=4))
    image = encode(np.asarray(held_out.image))
    answer = http.post("/v1/models/shapes:detect?min_score=0.3", content=image, headers={"Content-Type": "image/png"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["model"], body["version"], body["width"]) == ("shapes", 1, SIZE)
    found = [(d["label"], Box(**d["box"])) for d in body["detections"]]
    hits = sum(any(label == o.label and iou(box, o.box) >= 0.5 for label, box in found) for o in held_out.objects)

    classify = wait_job(http, classifier.json()["jobs"][-1]["id"], timeout=300, workers=workers)
    assert classify["state"] == "finished", classify
    stack.model_server.wait_available("roads", 1, timeout=60)
    road = road_image(np.random.default_rng(77))
    answer = http.post(
        "/v1/models/roads:classify", content=encode(np.asarray(road)), headers={"Content-Type": "image/png"}
    )
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert {p["label"] for p in predictions} == {"road", "not-road"} and answer.json()["version"] == 1
    assert predictions[0]["label"] == "road", predictions  # a held-out road image is told from a field

    measured = {
        "detector_map50": report["map50"],
        "detector_map50_coco101": report["map50_coco101"],
        "detector_map_coco": report["map_coco"],
        "detector_train_seconds": result["train_seconds"],
        "chain_seconds": round(chain_seconds, 1),
        "held_out_objects_found": f"{hits}/{len(held_out.objects)}",
        "classifier_scores": {p["label"]: round(p["score"], 3) for p in predictions},
    }
    print("\nend-to-end measurements:", json.dumps(measured))
