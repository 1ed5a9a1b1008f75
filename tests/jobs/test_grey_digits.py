"""Classifiers on small grey images, end to end through the APIs: a folder-per-class set of 28 x 28 grey PNG digits
imports, trains (grey read as RGB, upscaled to a 32 px canvas, MobileNet's smallest), exports and is served by the
real model server, and the gateway's ``:classify`` answers a 28 x 28 grey PNG, whatever its PNG mode.

The training is tiny (a few steps): the test checks that everything connects, not accuracy; top-1 on a held-out split
is measured by ``benchmarks/digits.py``.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from services.processes import ServerProcess
from services.training.digits import DIGITS, SIZE, draw_digit, write_digit_folders
from tests.jobs.support import KEY, running_job_stack, upload, wait_job, zip_folder
from tests.support.modelserver import ModelServerHandle

pytestmark = pytest.mark.integration

TRAIN = {
    "type": "train",
    "dataset": "digits",
    "input_size": 32,
    "weights": "none",
    "epochs": 1,
    "steps_per_epoch": 3,
    "batch_size": 8,
    "patience": 0,
    "export": {"model": "digits"},
}


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def modes_of(grey: Image.Image) -> dict[str, bytes]:
    """The same grey pixels as PNGs of other modes: with alpha, palette, and 16-bit (each value v as v * 257)."""
    sixteen = Image.fromarray(np.asarray(grey).astype(np.uint16) * 257)
    alpha = Image.merge("LA", (grey, Image.new("L", grey.size, 200)))
    images = {"L": grey, "LA": alpha, "P": grey.convert("P"), "I;16": sixteen}
    encoded = {mode: png(image) for mode, image in images.items()}
    for mode, data in encoded.items():
        assert Image.open(io.BytesIO(data)).mode == mode
    return encoded


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[httpx.Client, ModelServerHandle, list[ServerProcess]]]:
    with running_job_stack(tmp_path, ("worker-digits",)) as running:
        yield running.http, running.model_server, running.workers


def test_grey_28px_digits_import_train_export_and_classify(
    served: tuple[httpx.Client, ModelServerHandle, list[ServerProcess]], tmp_path: Path
) -> None:
    http, model_server, workers = served
    files = write_digit_folders(tmp_path / "folders", seed=3, per_class=4)
    assert {Image.open(f).mode for f in files} == {"L"} and {Image.open(f).size for f in files} == {(SIZE, SIZE)}
    imported = upload(http, "digits", "folders", zip_folder(tmp_path / "folders"), split="0.75")
    assert wait_job(http, imported, timeout=180, workers=workers)["state"] == "finished"
    version = http.get("/v1/datasets/digits", headers=KEY).json()["versions"][-1]
    assert (version["kind"], [row["name"] for row in version["table"]]) == ("classification", list(DIGITS)), version
    assert sum(t["images"] for t in version["totals"].values()) == len(files), version
    assert not any(version["problems"].values()), version

    submitted = http.post("/v1/jobs", json=TRAIN, headers=KEY)
    assert submitted.status_code == 202, submitted.text
    train_id, export_id = (j["id"] for j in submitted.json()["jobs"])
    train = wait_job(http, train_id, timeout=300, workers=workers)
    assert train["state"] == "finished" and train["result"]["kind"] == "classifier", train
    export = wait_job(http, export_id, timeout=300, workers=workers)
    assert export["state"] == "finished" and export["result"]["version"] == 1, export

    model_server.wait_available("digits", 1, timeout=60)
    described = http.get("/v1/models/digits").json()["versions"][0]
    assert described["input_size"] == 32 and [label["name"] for label in described["labels"]] == list(DIGITS)

    grey = draw_digit(np.random.default_rng(2024), "7")
    answers = {}
    for mode, data in modes_of(grey).items():
        answer = http.post("/v1/models/digits:classify?top_k=10", content=data, headers={"Content-Type": "image/png"})
        assert answer.status_code == 200, (mode, answer.text)
        answers[mode] = {p["label"]: p["score"] for p in answer.json()["predictions"]}
    assert set(answers["L"]) == set(DIGITS)
    assert sum(answers["L"].values()) == pytest.approx(1.0, abs=1e-3)
    # Every mode decodes to the same grey pixels (alpha dropped, palette looked up, 16 bits by their high byte).
    for mode, scores in answers.items():
        assert scores == pytest.approx(answers["L"], abs=1e-4), mode


def test_32px_is_for_classifiers_only(client: TestClient) -> None:
    classifier = client.post("/v1/jobs", json={"type": "train", "dataset": "roads", "input_size": 32}, headers=KEY)
    assert classifier.status_code == 202, classifier.text
    detector = client.post("/v1/jobs", json={"type": "train", "dataset": "shapes", "input_size": 32}, headers=KEY)
    assert detector.status_code == 422, detector.text
    assert detector.json()["error"]["details"]["parameter"] == "input_size"
    assert "at least 64" in detector.json()["error"]["message"]
