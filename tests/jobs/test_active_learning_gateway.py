"""Active learning through the serving path, end to end: a real model server serving the demo detector as
``shapes/1``, the gateway (with a key required for inference, so the worker must send one), and a real RQ worker
whose ``SPOTTER_GATEWAY_URL`` points at the gateway. An ``active-learning`` job with ``predict_via: gateway`` is
submitted through ``POST /v1/jobs``: its pool goes through the gateway's batcher (the batch-size histogram shows
batches of more than one image), it accepts examples, makes dataset version 2 and model version 2, and the model
server and gateway serve version 2.

A second job, started from those versions, is cancelled (``DELETE /v1/jobs/{id}``) while its round trains: it ends
``stopped``, no model version appears, the versions of the last complete round are as they were, and the report says
which dataset version the unfinished round left and that the round did not complete.

TensorFlow-free here: the worker's work-horses hold TensorFlow, the model server its own process.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.processes import ServerProcess, spotter_command, start_server
from services.training.synthetic import CLASSES, generate_scenes
from tests.conftest import REPO
from tests.datasets.fixtures import write_voc_with_label_map
from tests.gateway.helpers import gateway_settings, running_gateway
from tests.jobs.support import KEY, REDIS_URL, flush, upload, wait_job, worker_env, zip_folder
from tests.support.modelserver import ModelServerHandle, running_model_server

pytestmark = pytest.mark.integration

SIZE = 320
DEMO = REPO / "models" / "demo" / "1"
# Objects larger than the demo was trained on (14-40 px): it is sure of many, not of all.
SCENES: dict[str, Any] = {"width": SIZE, "height": SIZE, "object_size": (40, 70), "clutter": 8}
ROUND = {
    "type": "active-learning",
    "model": "shapes",
    "dataset": "shapes",
    "rounds": 1,
    "predict_via": "gateway",
    "predict_batch": 16,
    "epochs": 1,
    "steps_per_epoch": 20,
    "batch_size": 8,
    "train_size": 192,
    "warmup_steps": 0,
    "seed": 1,
}
MAX_BATCH = 8


@dataclass
class Stack:
    base: Path
    data: Path
    models: Path
    http: httpx.Client
    model_server: ModelServerHandle
    worker: ServerProcess


def _start_worker(data: Path, models: Path, logs: Path, gateway_url: str) -> ServerProcess:
    """``spotter worker`` that predicts through ``gateway_url`` with the key ``k1``."""
    log = logs / "worker.log"
    env = worker_env(data, models) | {"SPOTTER_GATEWAY_URL": gateway_url, "SPOTTER_GATEWAY_API_KEY": KEY["X-API-Key"]}
    return start_server(
        "worker",
        spotter_command("worker", "--name", f"al-worker-{time.monotonic_ns()}"),
        log_dir=logs,
        ready=lambda: log.exists() and "worker listening on" in log.read_text(errors="replace"),
        env=env,
        cwd=REPO,
        timeout=60,
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("al-gateway")
    data, models, logs = base / "data", base / "models", base / "logs"
    (models / "shapes").mkdir(parents=True)
    # A copy, not a link: the job publishes shapes/2 beside it.
    shutil.copytree(DEMO, models / "shapes" / "1")
    flush()
    worker: ServerProcess | None = None
    try:
        with running_model_server(models, log_dir=logs, poll_seconds=0.5, wait_for=["shapes"]) as model_server:
            settings = gateway_settings(
                model_server.grpc_target,
                model_root=models,
                data_dir=data,
                redis_url=REDIS_URL,
                api_keys="k1",
                inference_requires_key=True,
                max_batch_size=MAX_BATCH,
                max_batch_delay_ms=20.0,
            )
            with running_gateway(settings) as gateway, httpx.Client(base_url=gateway.url, timeout=30) as http:
                worker = _start_worker(data, models, logs, gateway.url)
                yield Stack(base, data, models, http, model_server, worker)
    finally:
        if worker is not None:
            worker.stop()
        flush()


def _write_pool(folder: Path, seed: int, per_class: int) -> int:
    """``per_class`` single-class scenes per class folder and two unlabelled ones in the root; how many images."""
    count = 0
    for k, label in enumerate(CLASSES):
        (folder / label).mkdir(parents=True)
        for i, scene in enumerate(generate_scenes(seed + k, per_class, objects=(1, 2), classes=[label], **SCENES)):
            scene.image.save(folder / label / f"{label}_{i:02d}.jpg", quality=95)
            count += 1
    for i, scene in enumerate(generate_scenes(seed + 10, 2, objects=(1, 1), **SCENES)):
        scene.image.save(folder / f"u_{i:02d}.jpg", quality=95)
        count += 1
    return count


def _batches(http: httpx.Client, version: str) -> tuple[float, float]:
    """``(batches, images)`` the gateway sent to the model server for ``shapes`` ``version`` so far."""
    text = http.get("/metrics").text
    count = total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != "spotter_batch_size":
            continue
        for sample in family.samples:
            if sample.labels.get("model") == "shapes" and sample.labels.get("version") == version:
                if sample.name.endswith("_count"):
                    count += sample.value
                elif sample.name.endswith("_sum"):
                    total += sample.value
    return count, total


def _versions(folder: Path) -> list[int]:
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


def _served(http: httpx.Client) -> list[int]:
    answer = http.get("/v1/models/shapes", headers=KEY)
    assert answer.status_code == 200, answer.text
    return sorted(v["version"] for v in answer.json()["versions"] if v["state"] == "AVAILABLE")


def _report(http: httpx.Client, job_id: str) -> dict[str, Any]:
    answer = http.get(f"/v1/jobs/{job_id}/artifacts/active_learning.json", headers=KEY)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


@pytest.fixture(scope="module")
def first_round(stack: Stack) -> dict[str, Any]:
    """The boxed dataset imported through the API, then one round through the gateway; its job record and the
    gateway's batches during it."""
    http = stack.http
    write_voc_with_label_map(stack.base / "voc", list(generate_scenes(11, 40, objects=(1, 3), **SCENES)), list(CLASSES))
    imported = upload(http, "shapes", "voc", zip_folder(stack.base / "voc"), split="0.5")
    assert wait_job(http, imported, timeout=120, workers=[stack.worker])["state"] == "finished"
    pool = _write_pool(stack.data / "pool", 21, 8)
    before = _batches(http, "1")
    started = time.monotonic()
    answer = http.post("/v1/jobs", json={**ROUND, "pool": "pool"}, headers=KEY)
    assert answer.status_code == 202, answer.text
    record = wait_job(http, answer.json()["job_id"], timeout=300, workers=[stack.worker])
    seconds = time.monotonic() - started
    after = _batches(http, "1")
    return {
        "record": record,
        "pool": pool,
        "batches": after[0] - before[0],
        "images": after[1] - before[1],
        "seconds": seconds,
    }


def test_a_round_predicts_through_the_gateway_in_batches_and_publishes_a_served_version(
    stack: Stack, first_round: dict[str, Any]
) -> None:
    record, http = first_round["record"], stack.http
    assert record["state"] == "finished", json.dumps(record, indent=1)[-3000:]
    result = record["result"]
    (entry,) = result["rounds"]
    assert entry["state"] == "published" and entry["accepted"] > 0, result
    assert entry["accepted"] + entry["review"] == first_round["pool"]
    assert (result["model_version"], result["dataset_version"]) == (2, 2)

    # Every pool image went through the gateway's batcher for version 1, in batches of more than one.
    batches, images = first_round["batches"], first_round["images"]
    assert images == first_round["pool"], (batches, images)
    assert 1 < images / batches <= MAX_BATCH, (batches, images)

    # The new dataset version holds the accepted images on top of version 1; validation as it was.
    dataset = http.get("/v1/datasets/shapes", headers=KEY).json()
    one, two = dataset["versions"]
    assert (one["version"], two["version"]) == (1, 2) and two["source"]["derived_from"] == "shapes/1"
    added = two["totals"]["train"]["images"] - one["totals"]["train"]["images"]
    assert added == entry["accepted"] and two["totals"]["validation"] == one["totals"]["validation"]
    report = _report(http, record["id"])
    assert report["rounds"][0]["complete"] is True
    assert report["current"] == {"round": 1, "model_version": 2, "dataset_version": 2}

    # The model server loads the new version without a restart; the gateway serves it.
    stack.model_server.wait_available("shapes", 2, timeout=60)
    assert _served(http) == [1, 2]
    image = next(iter(sorted((stack.data / "pool" / "circle").glob("*.jpg")))).read_bytes()
    detected = http.post(
        "/v1/models/shapes:detect?version=2", content=image, headers={**KEY, "Content-Type": "image/jpeg"}
    )
    assert detected.status_code == 200 and detected.json()["version"] == 2, detected.text
    print(
        "\nactive learning through the gateway:",
        json.dumps(
            {
                "pool_images": first_round["pool"],
                "accepted": entry["accepted"],
                "review": entry["review"],
                "gateway_batches": batches,
                "gateway_batch_mean": round(images / batches, 2),
                "map50_before": entry["map50_before"],
                "map50_after": entry["map50_after"],
                "job_seconds": round(first_round["seconds"], 1),
            }
        ),
    )


def test_cancelling_a_round_while_it_trains_leaves_the_last_complete_rounds_versions(
    stack: Stack, first_round: dict[str, Any]
) -> None:
    http = stack.http
    assert first_round["record"]["state"] == "finished"
    stack.model_server.wait_available("shapes", 2, timeout=60)
    datasets, models = stack.data / "datasets" / "shapes", stack.models / "shapes"
    assert (_versions(datasets), _versions(models)) == ([1, 2], [1, 2])
    manifests = {v: (datasets / str(v) / "manifest.json").read_bytes() for v in (1, 2)}

    _write_pool(stack.data / "pool2", 61, 6)
    # Long enough training that the cancel surely lands in it.
    answer = http.post(
        "/v1/jobs", json={**ROUND, "pool": "pool2", "min_score": 0.6, "epochs": 50, "steps_per_epoch": 50}, headers=KEY
    )
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    deadline = time.monotonic() + 240
    record: dict[str, Any] = {}
    while time.monotonic() < deadline:
        record = http.get(f"/v1/jobs/{job_id}", headers=KEY).json()
        if record["state"] != "started" and record["state"] not in ("queued", "deferred"):
            break
        if record["stage"] == "round 1: training":
            break
        time.sleep(0.25)
    assert record["stage"] == "round 1: training", json.dumps(record, indent=1)[-3000:]
    params = record["params"]
    assert (params["version"], params["dataset_version"]) == (2, 2)  # it started from the last complete round

    canceled = http.delete(f"/v1/jobs/{job_id}", headers=KEY)
    assert canceled.status_code in (200, 202), canceled.text
    ended = wait_job(http, job_id, timeout=60, workers=[stack.worker])
    assert ended["state"] == "stopped" and ended["error"]["code"] == "stopped", ended
    assert ended["result"] is None

    # No new model version, on disk or served; versions 1 and 2 of the dataset are byte for byte as they were.
    time.sleep(1.5)  # three polls of the model server: a version that appeared would show
    assert _versions(models) == [1, 2] and _served(http) == [1, 2]
    assert not [p.name for p in models.iterdir() if not p.name.isdigit()]  # no half-written export
    assert {v: (datasets / str(v) / "manifest.json").read_bytes() for v in (1, 2)} == manifests
    assert not [p.name for p in datasets.iterdir() if not p.name.isdigit()]  # no staging folder left

    # The round had made its dataset version (training needs it): the report ties it to a round that did not
    # complete, and names the last complete versions.
    report = _report(http, job_id)
    (entry,) = report["rounds"]
    assert entry["complete"] is False and entry["state"] == "training" and entry.get("model_version") is None
    assert _versions(datasets) == [1, 2, entry["dataset_version"]] and entry["dataset_version"] == 3
    assert report["current"] == {"round": 0, "model_version": 2, "dataset_version": 2}
    listed = http.get("/v1/datasets/shapes", headers=KEY).json()["versions"]
    assert [v["version"] for v in listed] == [1, 2, 3]


def test_a_round_that_accepts_only_images_already_in_the_dataset_makes_no_version(
    stack: Stack, first_round: dict[str, Any]
) -> None:
    """The images the first round accepted, offered again to the same model with the dataset that holds them: they
    are accepted again, and the job stops without a dataset version of the same images or a training run."""
    http, record = stack.http, first_round["record"]
    assert record["state"] == "finished"
    review = http.get(f"/v1/jobs/{record['id']}/artifacts/round-1/review/review.json", headers=KEY)
    assert review.status_code == 200, review.text
    sent_to_review = {r["filename"] for r in review.json()}
    pool = stack.data / "pool"
    accepted = [p for p in pool.rglob("*.jpg") if p.relative_to(pool).as_posix() not in sent_to_review]
    assert len(accepted) == record["result"]["rounds"][0]["accepted"]
    for path in accepted:
        target = stack.data / "pool3" / path.relative_to(pool)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    datasets = _versions(stack.data / "datasets" / "shapes")

    body = {**ROUND, "pool": "pool3", "version": 1, "dataset_version": 2}
    answer = http.post("/v1/jobs", json=body, headers=KEY)
    assert answer.status_code == 202, answer.text
    ended = wait_job(http, answer.json()["job_id"], timeout=180, workers=[stack.worker])
    assert ended["state"] == "finished", json.dumps(ended, indent=1)[-3000:]
    (entry,) = ended["result"]["rounds"]
    assert entry["state"] == "nothing_new" and entry["complete"] is True and entry["accepted"] > 0, entry
    assert entry["dataset_version"] is None and entry["run"] is None and entry["model_version"] is None
    assert (ended["result"]["model_version"], ended["result"]["dataset_version"]) == (1, 2)
    assert _versions(stack.data / "datasets" / "shapes") == datasets
    report = _report(http, ended["id"])
    assert report["rounds"][0]["already_in_dataset"] == entry["accepted"]
