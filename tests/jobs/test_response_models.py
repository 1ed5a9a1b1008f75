"""The jobs and datasets routes declare their answers' models (``/docs`` shows them), and answering through a model
changes no byte of meaning: the JSON is the record the jobs package builds, key for key (a key a record leaves out
stays out)."""

from __future__ import annotations

import json

import redis
from fastapi.testclient import TestClient

from services.gateway.config import GatewaySettings
from services.jobs.queues import fetch_job
from services.jobs.records import record
from tests.jobs.conftest import KEY

TRAIN = {"type": "train", "dataset": "shapes", "input_size": 128, "epochs": 2, "evaluate": True}
ANSWERS = {
    ("/v1/jobs", "post"): ("202", "SubmittedJobs"),
    ("/v1/jobs", "get"): ("200", "JobList"),
    ("/v1/jobs/{job_id}", "get"): ("200", "JobRecord"),
    ("/v1/jobs/{job_id}", "delete"): ("200", "CanceledJob"),
    ("/v1/datasets", "post"): ("202", "QueuedJob"),
    ("/v1/datasets", "get"): ("200", "DatasetList"),
    ("/v1/datasets/{name}", "get"): ("200", "DatasetDetail"),
}


def test_the_routes_declare_their_answers(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for (path, method), (status, model) in ANSWERS.items():
        content = spec["paths"][path][method]["responses"][status]["content"]["application/json"]
        assert content["schema"] == {"$ref": f"#/components/schemas/{model}"}, (path, method)
    record_fields = spec["components"]["schemas"]["JobRecord"]["properties"]
    assert {"id", "state", "progress", "chain", "artifacts", "error", "result"} <= set(record_fields)


def _plain(value: object) -> object:
    return json.loads(json.dumps(value))


def test_job_answers_are_the_records_exactly(client: TestClient, settings: GatewaySettings) -> None:
    submitted = client.post("/v1/jobs", json=TRAIN, headers=KEY)
    assert submitted.status_code == 202, submitted.text
    assert submitted.headers["Location"] == f"/v1/jobs/{submitted.json()['job_id']}"
    chain = submitted.json()["jobs"]
    assert [j["type"] for j in chain] == ["train", "evaluate"]
    with redis.Redis.from_url(settings.redis_url) as connection:
        jobs = [fetch_job(j["id"], connection) for j in chain]
        built = [record(job, settings.data_dir, model_root=settings.model_root) for job in jobs]
    assert chain == _plain(built)
    assert "epoch" not in chain[0]["progress"]  # left out by the record, so left out of the answer
    shown = client.get(f"/v1/jobs/{chain[1]['id']}", headers=KEY).json()
    assert shown == _plain(built[1])
    listed = client.get("/v1/jobs", headers=KEY).json()
    assert {j["id"]: j for j in listed["jobs"]} == {j["id"]: j for j in _plain(built)}
    canceled = client.delete(f"/v1/jobs/{chain[0]['id']}", headers=KEY).json()
    assert canceled["canceled_from"] == "queued" and canceled["state"] == "canceled"
    assert set(canceled) == {*built[0], "canceled_from"}


def test_dataset_answers_are_the_summaries_exactly(client: TestClient) -> None:
    listed = client.get("/v1/datasets", headers=KEY).json()["datasets"]
    shapes = next(d for d in listed if d["name"] == "shapes")
    assert set(shapes) == {"name", "version", "kind", "created", "format", "classes", "totals", "problems", "versions"}
    assert shapes["kind"] == "detection" and shapes["versions"] == [1]
    assert shapes["totals"]["train"] == {"images": 10, "boxes": 0}
    detail = client.get("/v1/datasets/shapes", headers=KEY).json()
    assert detail["name"] == "shapes" and detail["latest"] == 1
    assert {"table", "split", "source"} <= set(detail["versions"][0])
    assert detail["versions"][0]["table"][0]["name"] == "circle"
