"""``POST /v1/jobs`` with ``type: active-learning`` through the real gateway app and Redis: a pool where nothing is
usable (no images, only unknown classes, nothing readable), a model that is not ours or detects other classes, and
inconsistent thresholds are 422 at submit with nothing queued; a good submission is queued with its versions fixed.
A train job's ``init_from_run`` naming a run of another architecture or other classes, an unfinished or missing run,
or the run being trained is 422 too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from services.gateway.config import GatewaySettings
from services.store.runs import RunInfo, RunStore
from tests.jobs.conftest import KEY, queued, write_dataset

AL = {"type": "active-learning", "model": "shapes", "dataset": "shapes", "pool": "pool", "rounds": 2}


def _version(settings: GatewaySettings, classes: list[str], *, kind: str = "detector") -> None:
    """``models/shapes/1``: enough of an export for the submit-time checks (its metadata and a saved_model.pb)."""
    folder = settings.model_root / "shapes" / "1"
    (folder / "assets.extra").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"")
    info = {"kind": kind, "detector": {"classes": classes, "backbone": "mobilenet_v2", "alpha": 0.35}}
    (folder / "assets.extra" / "spotter.json").write_text(json.dumps(info))


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), "white").save(path)


@pytest.fixture
def pool(settings: GatewaySettings) -> Path:
    _version(settings, ["circle", "square"])
    return settings.data_dir / "pool"


def submit(client: TestClient, body: dict):  # type: ignore[no-untyped-def]
    return client.post("/v1/jobs", json=body, headers=KEY)


def _refused(client: TestClient, settings: GatewaySettings, body: dict, *messages: str) -> None:
    answer = submit(client, body)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    for message in messages:
        assert message in error["message"], error
    assert queued(settings.redis_url) == 0


def test_a_pool_without_images_is_422(client: TestClient, settings: GatewaySettings, pool: Path) -> None:
    (pool / "circle").mkdir(parents=True)
    (pool / "circle" / "notes.txt").write_text("no images here")
    _refused(client, settings, AL, "nothing in pool 'pool' is usable", "it holds no images")
    _refused(client, settings, {**AL, "pool": "elsewhere"}, "pool folder not found: elsewhere")


@pytest.mark.parametrize("pool_path", ["/etc", "/no/such/folder", "~root", "../pool", "pool/../../etc", "\\etc"])
def test_a_pool_outside_the_data_folder_is_422_whether_or_not_it_exists(
    client: TestClient, settings: GatewaySettings, pool: Path, pool_path: str
) -> None:
    """The API is no oracle for the host's folders: the same answer, before anything is looked at."""
    _image(pool / "circle" / "a.png")
    _refused(client, settings, {**AL, "pool": pool_path}, "pool must be a folder relative to the data folder")


def test_a_pool_of_unknown_classes_only_is_422_naming_them(
    client: TestClient, settings: GatewaySettings, pool: Path
) -> None:
    _image(pool / "giraffe" / "a.png")
    _image(pool / "giraffe" / "b.png")
    _image(pool / "zebra" / "c.png")
    _refused(client, settings, AL, "giraffe (2), zebra (1)", "classes: circle, square")


def test_a_pool_with_nothing_readable_is_422(client: TestClient, settings: GatewaySettings, pool: Path) -> None:
    (pool / "circle").mkdir(parents=True)
    (pool / "circle" / "a.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    (pool / "b.png").write_bytes(b"\x89PNG broken")
    _refused(client, settings, AL, "no readable image (2 unreadable")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": "ghost"}, "no model 'ghost'"),
        ({"version": 4}, "no model 'shapes' version 4"),
        ({"dataset": "roads"}, "has no boxes"),
        ({"dataset": "novalid"}, "no validation images"),
        ({"pool": None}, "exactly one of pool"),
        ({"pool_dataset": "roads"}, "exactly one of pool"),
        ({"min_score": 0.9, "unlabelled_min_score": 0.6}, "unlabelled_min_score must be at least min_score"),
        ({"candidate_score": 0.95}, "candidate_score must be at most min_score"),
        ({"predict_via": "carrier-pigeon"}, "predict_via"),
        ({"rounds": 0}, "rounds"),
    ],
)
def test_bad_parameters_are_422(
    client: TestClient, settings: GatewaySettings, pool: Path, change: dict, message: str
) -> None:
    _image(pool / "circle" / "a.png")
    _refused(client, settings, {**AL, **change}, message)


def test_a_model_with_other_classes_or_not_a_detector_is_422(client: TestClient, settings: GatewaySettings) -> None:
    _version(settings, ["square", "circle"])
    _image(settings.data_dir / "pool" / "circle" / "a.png")
    _refused(client, settings, AL, "the classes (and their order) must be the same")
    write_dataset(settings.data_dir, "plain", "classification", ["circle", "square"])
    (settings.model_root / "shapes" / "1" / "assets.extra" / "spotter.json").write_text('{"kind": "classifier"}')
    _refused(client, settings, AL, "is not a detector exported by Spotter")


def test_a_pool_dataset_must_be_a_pool_with_usable_images(
    client: TestClient, settings: GatewaySettings, pool: Path
) -> None:
    body = {**AL, "pool": None, "pool_dataset": "roads"}
    _refused(client, settings, body, "dataset 'roads' is a classification dataset, not a pool")
    _refused(client, settings, {**body, "pool_dataset": "nothing"}, "dataset 'nothing' not found")


def test_a_usable_pool_is_queued_with_its_versions_fixed_and_the_rest_listed_at_run_time(
    client: TestClient, settings: GatewaySettings, pool: Path
) -> None:
    _image(pool / "giraffe" / "a.png")  # unknown: left out when the job runs, not a reason to refuse
    (pool / "circle").mkdir(parents=True)
    (pool / "circle" / "broken.jpg").write_bytes(b"nope")
    _image(pool / "circle" / "ok.png")
    answer = submit(client, AL)
    assert answer.status_code in (200, 201, 202), answer.text
    (job,) = answer.json()["jobs"]
    assert job["type"] == "active-learning"
    params = client.get(f"/v1/jobs/{job['id']}", headers=KEY).json()["params"]
    assert params["version"] == 1 and params["dataset_version"] == 1 and params["run_prefix"].startswith("shapes-al-")
    assert queued(settings.redis_url) == 1


def _run(
    settings: GatewaySettings, name: str, classes: list[str], *, state: str = "complete", **identity: object
) -> None:
    """``runs/<name>/run.json``: a run of the ``shapes`` dataset as check_train reads it."""
    values = {"kind": "detector", "dataset": "shapes", "dataset_version": 1, "backbone": "mobilenet_v2"}
    values |= {"alpha": 0.35, "input_size": 320, "classes": classes, **identity}
    RunStore(settings.data_dir).write_info(RunInfo(name, values, {}, {}, state=state, epochs_done=2))


TRAIN = {"type": "train", "dataset": "shapes", "epochs": 1}


def test_init_from_a_run_of_another_architecture_or_other_classes_is_422(
    client: TestClient, settings: GatewaySettings
) -> None:
    _run(settings, "good", ["circle", "square"])
    _run(settings, "swapped", ["square", "circle"])
    _run(settings, "v3", ["circle", "square"], backbone="mobilenet_v3_small", alpha=0.5)
    _run(settings, "unfinished", ["circle", "square"], state="training")
    _refused(
        client,
        settings,
        {**TRAIN, "init_from_run": "swapped"},
        "run 'swapped' can't lend its weights",
        "classes: ['square', 'circle'] -> ['circle', 'square']",
    )
    _refused(
        client,
        settings,
        {**TRAIN, "init_from_run": "v3"},
        "backbone: 'mobilenet_v3_small' -> 'mobilenet_v2'",
        "alpha: 0.5 -> 0.35",
    )
    _refused(client, settings, {**TRAIN, "init_from_run": "unfinished"}, "has not finished training")
    _refused(client, settings, {**TRAIN, "init_from_run": "ghost"}, "no run named 'ghost'")
    _refused(client, settings, {**TRAIN, "init_from_run": "good", "run": "good"}, "init_from_run names the run")
    _refused(
        client, settings, {**TRAIN, "init_from_run": "good", "init_from_model": "shapes"}, "at most one of init_from"
    )
    answer = submit(client, {**TRAIN, "init_from_run": "good", "alpha": 0.35})
    assert answer.status_code == 202, answer.text
    assert queued(settings.redis_url) == 1
