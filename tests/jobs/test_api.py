"""``/v1/jobs`` through the real gateway app and the real Redis, without a worker: what is refused at submit (and
that nothing is queued then), chains, listing, cancelling, artifacts, API keys."""

from __future__ import annotations

import json

import pytest
import redis
from fastapi.testclient import TestClient

from services.gateway.config import GatewaySettings
from services.jobs.queues import TRAIN_QUEUE, fetch_job, get_queue
from services.jobs.records import job_dir
from services.store.runs import RunInfo, RunStore
from tests.jobs.conftest import KEY, queued

TRAIN = {"type": "train", "dataset": "shapes", "input_size": 128, "epochs": 2}


def submit(client: TestClient, body: dict, headers: dict[str, str] | None = KEY):  # type: ignore[no-untyped-def]
    return client.post("/v1/jobs", json=body, headers=headers)


def test_jobs_need_an_api_key(client: TestClient) -> None:
    assert submit(client, TRAIN, headers={}).status_code == 401
    assert submit(client, TRAIN, headers={"X-API-Key": "nope"}).status_code == 403
    assert client.get("/v1/jobs").status_code == 401
    assert client.get("/v1/jobs/x", headers={"Authorization": "Bearer nope"}).status_code == 403
    assert client.delete("/v1/jobs/x").status_code == 401


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"type": "fly", "dataset": "shapes"}, "type"),
        ({"dataset": "shapes"}, "type"),
        ({**TRAIN, "alpha": 5}, "alpha"),
        ({**TRAIN, "input_size": 100}, "input_size"),
        ({**TRAIN, "epochs": 0}, "epochs"),
        ({**TRAIN, "backbone": "resnet50"}, "backbone"),
        ({**TRAIN, "train_size": 256}, "train_size"),
        ({**TRAIN, "views": "tiles", "train_size": 256}, "train_size 256 is larger than input_size"),
        ({**TRAIN, "background_ratio": 0.95}, "background_ratio"),
        ({**TRAIN, "background_ratio": -0.1}, "background_ratio"),
        ({**TRAIN, "views": "mosaic"}, "views"),
        ({**TRAIN, "colour": "red"}, "colour"),
        ({**TRAIN, "export": {"model": "../up"}}, "export.model"),
        ({**TRAIN, "run": "a/b"}, "run"),
        ({"type": "evaluate", "run": "r", "model": "m"}, "exactly one of run"),
        ({"type": "evaluate", "model": "m"}, "needs a dataset"),
        ({"type": "export", "run": "r"}, "model"),
    ],
)
def test_bad_parameters_are_422_naming_them_and_queue_nothing(
    client: TestClient, settings: GatewaySettings, body: dict, where: str
) -> None:
    answer = submit(client, body)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_parameter" and where in error["message"], error
    assert queued(settings.redis_url) == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({**TRAIN, "dataset": "nothing"}, "dataset 'nothing' not found (datasets: novalid, roads, shapes)"),
        ({**TRAIN, "dataset_version": 7}, "dataset 'shapes' has no version 7"),
        ({**TRAIN, "weights": "no-such-weights.h5"}, "weights file not found"),
        ({**TRAIN, "dataset": "novalid", "evaluate": True}, "has no validation images"),
        ({"type": "evaluate", "model": "ghost", "dataset": "shapes"}, "no model named 'ghost'"),
        ({"type": "evaluate", "run": "ghost"}, "no run named 'ghost'"),
        ({"type": "export", "run": "ghost", "model": "m"}, "no run named 'ghost'"),
        ({**TRAIN, "dataset": "roads", "views": "tiles"}, "views 'tiles' needs a detection dataset"),
    ],
)
def test_what_does_not_exist_is_422_at_submit_and_queues_nothing(
    client: TestClient, settings: GatewaySettings, body: dict, message: str
) -> None:
    answer = submit(client, body)
    assert answer.status_code == 422, answer.text
    assert message in answer.json()["error"]["message"]
    assert queued(settings.redis_url) == 0


def test_a_run_cannot_be_resumed_with_other_settings_or_once_complete(
    client: TestClient, settings: GatewaySettings
) -> None:
    identity = {"kind": "detector", "dataset": "shapes", "dataset_version": 1, "backbone": "mobilenet_v2"}
    identity |= {"alpha": 0.35, "input_size": 128, "classes": ["circle", "square"]}
    runs = RunStore(settings.data_dir)
    runs.write_info(RunInfo("mine", identity, {}, {}))
    answer = submit(client, {**TRAIN, "run": "mine", "alpha": 0.5})
    assert answer.status_code == 422 and "alpha: 0.35 -> 0.5" in answer.json()["error"]["message"]
    runs.write_info(RunInfo("done", identity, {}, {}, state="complete", epochs_done=2))
    answer = submit(client, {**TRAIN, "run": "done"})
    assert answer.status_code == 422 and "complete" in answer.json()["error"]["message"]
    answer = submit(client, {"type": "export", "run": "mine", "model": "m"})
    assert answer.status_code == 422 and "has not finished training" in answer.json()["error"]["message"]
    assert queued(settings.redis_url) == 0
    assert submit(client, {**TRAIN, "run": "done", "restart": True}).status_code == 202


def test_a_train_job_chains_evaluate_and_export(client: TestClient, settings: GatewaySettings) -> None:
    answer = submit(client, {**TRAIN, "evaluate": True, "export": {"model": "shapes", "threshold": 0.1}})
    assert answer.status_code == 202, answer.text
    body = answer.json()
    train, evaluate, export = body["jobs"]
    assert body["job_id"] == train["id"] and answer.headers["location"] == f"/v1/jobs/{train['id']}"
    assert [j["type"] for j in body["jobs"]] == ["train", "evaluate", "export"]
    assert [j["state"] for j in body["jobs"]] == ["queued", "deferred", "deferred"]
    chain = [train["id"], evaluate["id"], export["id"]]
    assert all(j["chain"] == chain for j in body["jobs"])
    assert (train["depends_on"], evaluate["depends_on"], export["depends_on"]) == (None, chain[0], chain[1])
    run = train["params"]["run"]
    assert run.startswith("shapes-") and train["params"]["dataset_version"] == 1
    assert evaluate["params"] == {**evaluate["params"], "run": run, "dataset": "shapes", "split": "validation"}
    assert export["params"]["model"] == "shapes" and export["params"]["threshold"] == 0.1
    with redis.Redis.from_url(settings.redis_url) as connection:
        queue = get_queue(TRAIN_QUEUE, connection)
        assert queue.get_job_ids() == [train["id"]]
        assert sorted(queue.deferred_job_registry.get_job_ids()) == sorted(chain[1:])
        assert fetch_job(chain[2], connection).dependency_ids == [chain[1]]
    shown = client.get(f"/v1/jobs/{export['id']}", headers=KEY).json()
    assert shown["state"] == "deferred" and shown["progress"] == {"percent": 0.0}

    # A second job naming the same run while the first waits: 409.
    again = submit(client, {**TRAIN, "run": run})
    assert again.status_code == 409 and train["id"] in again.json()["error"]["message"]


def test_listing_filters_newest_first_and_is_bounded(client: TestClient) -> None:
    first = submit(client, TRAIN).json()["job_id"]
    second = submit(client, {**TRAIN, "evaluate": True}).json()["jobs"]
    listed = client.get("/v1/jobs", headers=KEY).json()["jobs"]
    assert [j["id"] for j in listed] == [second[1]["id"], second[0]["id"], first]
    trains = client.get("/v1/jobs?type=train", headers=KEY).json()["jobs"]
    assert [j["id"] for j in trains] == [second[0]["id"], first]
    deferred = client.get("/v1/jobs?state=deferred", headers=KEY).json()["jobs"]
    assert [j["id"] for j in deferred] == [second[1]["id"]]
    assert len(client.get("/v1/jobs?limit=1", headers=KEY).json()["jobs"]) == 1
    assert client.get("/v1/jobs?limit=0", headers=KEY).status_code == 422
    assert client.get("/v1/jobs?state=sleeping", headers=KEY).status_code == 422


def test_cancel_a_queued_chain_then_409_and_404(client: TestClient, settings: GatewaySettings) -> None:
    jobs = submit(client, {**TRAIN, "evaluate": True, "export": {"model": "shapes"}}).json()["jobs"]
    answer = client.delete(f"/v1/jobs/{jobs[0]['id']}", headers=KEY)
    assert answer.status_code == 200, answer.text
    assert answer.json()["state"] == "canceled" and answer.json()["canceled_from"] == "queued"
    for job in jobs[1:]:
        shown = client.get(f"/v1/jobs/{job['id']}", headers=KEY).json()
        assert shown["state"] == "canceled" and shown["error"]["code"] == "dependency_failed"
    assert queued(settings.redis_url) == 0
    again = client.delete(f"/v1/jobs/{jobs[0]['id']}", headers=KEY)
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    assert client.delete("/v1/jobs/nope", headers=KEY).status_code == 404
    assert client.get("/v1/jobs/nope", headers=KEY).json()["error"]["code"] == "job_not_found"


def test_artifacts_are_served_from_the_job_folder_only(client: TestClient, settings: GatewaySettings) -> None:
    job_id = submit(client, TRAIN).json()["job_id"]
    folder = job_dir(settings.data_dir, job_id)
    (folder / "round-1" / "voc").mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"loss": [1.0]}))
    (folder / "round-1" / "review.json").write_text("[]")
    (folder / "round-1" / "voc" / "a.xml").write_text("<annotation/>")
    (folder / ".metrics.json.1.tmp").write_text("half")
    (settings.data_dir / "secret.txt").write_text("no")
    (folder / "link.txt").symlink_to(settings.data_dir / "secret.txt")
    record = client.get(f"/v1/jobs/{job_id}", headers=KEY).json()
    assert [a["name"] for a in record["artifacts"]] == ["metrics.json", "round-1/review.json"]  # two levels listed
    artifact = record["artifacts"][0]
    assert artifact["url"] == f"/v1/jobs/{job_id}/artifacts/metrics.json"
    assert artifact["path"] == f"jobs/{job_id}/metrics.json"  # relative to the data folder: no server path
    got = client.get(artifact["url"], headers=KEY)
    assert got.status_code == 200 and got.json() == {"loss": [1.0]}
    deep = client.get(f"/v1/jobs/{job_id}/artifacts/round-1/voc/a.xml", headers=KEY)
    assert deep.status_code == 200 and deep.text == "<annotation/>"
    for name in ("..%2F..%2Fsecret.txt", "round-1/..%2F..%2F..%2Fsecret.txt", "%2E%2E", ".metrics.json.1.tmp"):
        assert client.get(f"/v1/jobs/{job_id}/artifacts/{name}", headers=KEY).status_code == 404, name
    for name in ("nope.png", "link.txt", "round-1", "round-1/.hidden"):
        assert client.get(f"/v1/jobs/{job_id}/artifacts/{name}", headers=KEY).status_code == 404, name
    assert client.get(f"/v1/jobs/{job_id}/artifacts/metrics.json").status_code == 401
