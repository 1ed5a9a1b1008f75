"""``POST /v1/datasets`` through the real gateway app, imported by a real ``spotter worker`` against the real Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from rq.job import JobStatus

from services.gateway.app import create_app
from services.gateway.config import GatewaySettings
from services.jobs.queues import ALL_QUEUES, fetch_job, get_queue
from services.worker.config import WorkerSettings
from tests.datasets.fixtures import scenes, tree, write_voc_dataset, zip_folder
from tests.datasets.test_archive import JPEG, make_zip
from tests.datasets.test_voc import BILLION_LAUGHS
from tests.support.processes import free_port
from tests.worker.helpers import run_burst_worker

KEY = {"X-API-Key": "k1"}


class SmallUploads(GatewaySettings):
    """The gateway's settings with a small upload limit (the dataset limits are optional settings of the gateway)."""

    dataset_max_upload_bytes: int = 400_000
    dataset_max_files: int = 50


@pytest.fixture
def gateway(tmp_path: Path, redis_url: str) -> Iterator[tuple[TestClient, GatewaySettings]]:
    (tmp_path / "models").mkdir()
    settings = SmallUploads(
        _env_file=None,
        tfs_grpc=f"127.0.0.1:{free_port()}",  # no model server: datasets don't need one
        tfs_deadline_seconds=1.0,
        model_root=tmp_path / "models",
        data_dir=tmp_path / "data",
        redis_url=redis_url,
        api_keys="k1",
    )
    with TestClient(create_app(settings)) as client:
        yield client, settings


@pytest.fixture
def voc_zip(tmp_path: Path) -> Path:
    write_voc_dataset(tmp_path / "src", scenes(count=12))
    return zip_folder(tmp_path / "src", tmp_path / "shapes.zip")


def worker_settings_of(settings: GatewaySettings) -> WorkerSettings:
    return WorkerSettings(_env_file=None, data_dir=settings.data_dir, redis_url=settings.redis_url)


def queued(redis_url: str) -> int:
    with redis.Redis.from_url(redis_url) as connection:
        return sum(get_queue(q, connection).count for q in ALL_QUEUES)


def upload(client: TestClient, archive: Path, headers: dict[str, str] | None = KEY, **fields: str):
    form = {"name": "shapes", "format": "voc", **fields}
    with archive.open("rb") as f:
        return client.post(
            "/v1/datasets", files={"file": (archive.name, f, "application/zip")}, data=form, headers=headers
        )


@pytest.mark.integration
def test_an_upload_is_imported_by_a_real_worker_and_shows_in_the_api(
    gateway: tuple[TestClient, GatewaySettings], voc_zip: Path, tmp_path: Path
) -> None:
    client, settings = gateway
    label_map = tmp_path / "map.pbtxt"
    label_map.write_text(
        "item { id: 1 name: 'circle' }\nitem { id: 2 name: 'square' }\n"
        "item { id: 3 name: 'triangle' }\nitem { id: 4 name: 'cross' }\n"
    )
    with voc_zip.open("rb") as f, label_map.open("rb") as lm:
        answer = client.post(
            "/v1/datasets",
            files={"file": ("shapes.zip", f, "application/zip"), "label_map": ("map.pbtxt", lm)},
            data={"name": "shapes", "format": "voc", "split": "0.75", "seed": "5"},
            headers=KEY,
        )
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    assert answer.json()["status_url"] == f"/v1/jobs/{job_id}" == answer.headers["location"]
    upload_dir = settings.data_dir / "uploads" / job_id
    assert (upload_dir / "archive").read_bytes() == voc_zip.read_bytes()

    with redis.Redis.from_url(settings.redis_url) as connection:
        job = fetch_job(job_id, connection)
        assert job.get_status() == JobStatus.QUEUED and job.meta["type"] == "import" and job.origin == "spotter-data"
        output = run_burst_worker(worker_settings_of(settings), tmp_path / "logs")
        job = fetch_job(job_id, connection)
        assert job.get_status() == JobStatus.FINISHED, output
        assert job.meta["progress"] == 100.0 and job.meta["counts"]["images"] == 12
        result = job.return_value()
    assert (result["dataset"], result["version"]) == ("shapes", 1)
    assert result["problems"]["counts"] == {"fatal": 0, "error": 0, "warning": 0}
    assert not upload_dir.exists()  # the upload goes once it is imported
    artifacts = settings.data_dir / "jobs" / job_id
    assert json.loads((artifacts / "result.json").read_text())["result"]["version"] == 1
    assert "Validate" in (artifacts / "log.txt").read_text()  # the summary table is in the job's log

    listed = client.get("/v1/datasets", headers=KEY)
    assert listed.status_code == 200
    [dataset] = listed.json()["datasets"]
    assert (dataset["name"], dataset["versions"], dataset["kind"], dataset["format"]) == (
        "shapes",
        [1],
        "detection",
        "voc",
    )
    shown = client.get("/v1/datasets/shapes", headers=KEY).json()
    assert shown["latest"] == 1
    [version] = shown["versions"]
    assert version["split"] == {
        "ratios": {"train": 0.75, "validation": 0.25},
        "seed": 5,
        "rule": "iterative-stratification",
    }
    assert version["source"]["archive"] == "shapes.zip" and version["source"]["label_map"] == "label_map.pbtxt"
    assert [(row["id"], row["name"]) for row in version["table"]] == [
        (1, "circle"),
        (2, "square"),
        (3, "triangle"),
        (4, "cross"),
    ]
    assert sum(r["train"]["images"] + r["validation"]["images"] for r in version["table"]) >= 12


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        ([("a.xml", b"<a/>"), ("../../evil.jpg", JPEG)], "leaves the archive"),
        ([("a.jpg", JPEG), ("/etc/cron.d/evil.jpg", JPEG)], "absolute path"),
        ([("a.jpg", JPEG), ("tool.exe", b"MZ")], "not a file type"),
    ],
)
def test_a_hostile_archive_gets_400_with_the_reason_and_nothing_is_queued(
    gateway: tuple[TestClient, GatewaySettings], tmp_path: Path, entries: list, reason: str
) -> None:
    client, settings = gateway
    before = tree(settings.data_dir)
    answer = upload(client, make_zip(tmp_path / "bad.zip", entries))
    assert answer.status_code == 400
    assert reason in answer.json()["error"]["message"]
    assert answer.json()["error"]["details"]["refused"]
    assert queued(settings.redis_url) == 0
    assert tree(settings.data_dir) == before


def test_too_big_uploads_and_archives_get_413(gateway: tuple[TestClient, GatewaySettings], tmp_path: Path) -> None:
    client, settings = gateway
    big = tmp_path / "big.zip"
    big.write_bytes(b"PK\x03\x04" + bytes(500_000))
    answer = upload(client, big)
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "payload_too_large"
    many = make_zip(tmp_path / "many.zip", [(f"{i}.jpg", JPEG) for i in range(60)])  # past dataset_max_files
    answer = upload(client, many)
    assert answer.status_code == 413 and "more than 50 files" in answer.json()["error"]["message"]
    assert queued(settings.redis_url) == 0
    assert tree(settings.data_dir) == []


def test_bad_fields_are_422_and_bad_forms_400_or_415(
    gateway: tuple[TestClient, GatewaySettings], voc_zip: Path
) -> None:
    client, settings = gateway
    for fields, words in [
        ({"split": "0.99"}, "split"),
        ({"split": "abc"}, "split"),
        ({"format": "yolo"}, "format"),
        ({"name": "../etc"}, "dataset name"),
        ({"name": ""}, "name is required"),
        ({"seed": "x"}, "seed"),
    ]:
        answer = upload(client, voc_zip, **fields)
        assert answer.status_code == 422, (fields, answer.text)
        assert words in answer.json()["error"]["message"]
    no_file = client.post(
        "/v1/datasets", data={"name": "x", "format": "voc"}, files={"other": ("x", b"1")}, headers=KEY
    )
    assert no_file.status_code == 400 and "unknown form field" in no_file.json()["error"]["message"]
    not_form = client.post(
        "/v1/datasets", content=voc_zip.read_bytes(), headers={**KEY, "content-type": "application/zip"}
    )
    assert not_form.status_code == 415
    boundary = {**KEY, "content-type": "multipart/form-data; boundary=xyz"}
    garbled = client.post("/v1/datasets", content=b"--xyz\r\nno headers at all", headers=boundary)
    assert garbled.status_code == 400, garbled.text
    cut = b'--xyz\r\nContent-Disposition: form-data; name="name"\r\n\r\nshapes'
    assert client.post("/v1/datasets", content=cut, headers=boundary).status_code == 400
    bad_map = client.post(
        "/v1/datasets",
        files={"file": ("a.zip", voc_zip.read_bytes()), "label_map": ("m.pbtxt", b"item { id: 0 name: 'x' }")},
        data={"name": "x", "format": "voc"},
        headers=KEY,
    )
    assert bad_map.status_code == 400 and "label_map" in bad_map.json()["error"]["message"]
    assert queued(settings.redis_url) == 0 and tree(settings.data_dir) == []


def test_keys_are_required_and_unknown_datasets_are_404(
    gateway: tuple[TestClient, GatewaySettings], voc_zip: Path
) -> None:
    client, _ = gateway
    assert upload(client, voc_zip, headers=None).status_code == 401
    assert upload(client, voc_zip, headers={"X-API-Key": "wrong"}).status_code == 403
    assert client.get("/v1/datasets").status_code == 401
    assert client.get("/v1/datasets", headers=KEY).json() == {"datasets": []}
    missing = client.get("/v1/datasets/nope", headers=KEY)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "dataset_not_found"
    assert client.get("/v1/datasets/..%2Fx", headers=KEY).status_code == 404


@pytest.mark.integration
def test_an_import_that_fails_in_the_worker_fails_visibly_and_leaves_nothing(
    gateway: tuple[TestClient, GatewaySettings], tmp_path: Path
) -> None:
    client, settings = gateway
    src = tmp_path / "src"
    write_voc_dataset(src, scenes(count=3))
    (src / "annotations" / "scene_001.xml").write_bytes(BILLION_LAUGHS)
    answer = upload(client, zip_folder(src, tmp_path / "laughs.zip"))
    assert answer.status_code == 202  # the listing is fine: the XML is looked at by the job
    job_id = answer.json()["job_id"]
    run_burst_worker(worker_settings_of(settings), tmp_path / "logs")
    with redis.Redis.from_url(settings.redis_url) as connection:
        job = fetch_job(job_id, connection)
        assert job.get_status() == JobStatus.FAILED
        error = job.meta["error"]
    assert error["code"] == "invalid_input", error
    assert "xml_forbidden" in json.dumps(error["details"])
    assert "annotations/scene_001.xml" in error["message"]
    problems = json.loads((settings.data_dir / "jobs" / job_id / "problems.json").read_text())
    assert problems["counts"]["fatal"] == 1
    artifacts = [f"jobs/{job_id}/{f}" for f in ("log.txt", "problems.json", "result.json")]
    assert tree(settings.data_dir) == ["jobs/", f"jobs/{job_id}/", *artifacts, "uploads/"]  # no dataset, no upload
    assert client.get("/v1/datasets/shapes", headers=KEY).status_code == 404


def test_without_redis_an_upload_is_503_and_not_kept(tmp_path: Path, voc_zip: Path) -> None:
    (tmp_path / "models").mkdir()
    settings = SmallUploads(
        _env_file=None,
        tfs_grpc=f"127.0.0.1:{free_port()}",
        model_root=tmp_path / "models",
        data_dir=tmp_path / "data",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",  # nobody listens
        api_keys="k1",
    )
    with TestClient(create_app(settings)) as client:
        answer = upload(client, voc_zip)
    assert answer.status_code == 503 and "Redis" in answer.json()["error"]["message"]
    assert "retry-after" in answer.headers
    assert tree(settings.data_dir) == []
