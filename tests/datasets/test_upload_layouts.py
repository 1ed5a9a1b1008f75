"""Datasets as people bring them, uploaded through the real gateway app and imported by a real ``spotter worker``
on the real Redis, with the default RELATIVE data folder (``data``, both processes started in a temporary working
folder): a CSV in ``annotations/`` beside ``images/`` (issue 12 item 5), bad numbers and ambiguous names listed in
the import's report (issue 11 item 5), and entry names too long for the file system refused at the upload check."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from rq.job import JobStatus

from services.gateway.app import create_app
from services.gateway.config import GatewaySettings
from services.jobs.queues import fetch_job
from services.processes import spotter_command
from services.worker.config import WorkerSettings
from tests.datasets.fixtures import tree, zip_folder
from tests.datasets.hostile import archive_cases, build_archive, scene_image
from tests.datasets.test_upload_api import queued
from tests.support.processes import free_port
from tests.worker.helpers import worker_env

KEY = {"X-API-Key": "k1"}
HEADER = ["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"]


@pytest.fixture
def relative_gateway(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, GatewaySettings]]:
    """The gateway with ``data_dir=data`` (relative, the default), run from ``tmp_path/cwd``."""
    cwd = tmp_path / "cwd"
    (cwd / "models").mkdir(parents=True)
    monkeypatch.chdir(cwd)
    settings = GatewaySettings(
        _env_file=None,
        tfs_grpc=f"127.0.0.1:{free_port()}",  # no model server: datasets don't need one
        tfs_deadline_seconds=1.0,
        model_root=Path("models"),
        data_dir=Path("data"),
        redis_url=redis_url,
        api_keys="k1",
    )
    with TestClient(create_app(settings)) as client:
        yield client, settings


def run_worker_in(cwd: Path, settings: GatewaySettings) -> str:
    """``spotter worker --burst`` started in ``cwd`` with the same relative data folder; its output."""
    worker = WorkerSettings(_env_file=None, data_dir=settings.data_dir, redis_url=settings.redis_url)
    env = {**os.environ, **worker_env(worker)}
    assert env["SPOTTER_DATA_DIR"] == "data"
    done = subprocess.run(
        spotter_command("worker", "--burst"), env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return output


def wally_posters(folder: Path, count: int) -> list[list[str]]:
    """``images/poster_NNN.jpg`` (1280x800 scenes) and their CSV rows, one small 'wally' box each."""
    rows = []
    for i in range(count):
        name = f"poster_{i:03d}.jpg"
        scene_image(name, 1280, 800, folder / "images" / name)
        x, y = 100 + 90 * i, 200 + 40 * i
        rows.append([name, "1280", "800", "wally", str(x), str(y), str(x + 37), str(y + 49)])
    return rows


def write_csv(path: Path, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerows(rows)


def upload(client: TestClient, archive: Path, name: str, fmt: str = "csv"):  # type: ignore[no-untyped-def]
    with archive.open("rb") as f:
        return client.post(
            "/v1/datasets",
            files={"file": (archive.name, f, "application/zip")},
            data={"name": name, "format": fmt},
            headers=KEY,
        )


@pytest.mark.integration
def test_csv_in_annotations_beside_images_imports_with_a_relative_data_dir_and_lists_every_problem(
    relative_gateway: tuple[TestClient, GatewaySettings], tmp_path: Path
) -> None:
    client, settings = relative_gateway
    # The layout of the TF OD API tutorials: images/ and annotations/labels.csv.
    good = tmp_path / "good"
    write_csv(good / "annotations" / "labels.csv", wally_posters(good, 8))
    # The same layout, with what people's CSVs hold: a nan box, 4_0, a name in two folders, a wrong declared size.
    bad = tmp_path / "bad"
    rows = wally_posters(bad, 6)
    rows[1][6] = "nan"  # poster_001's only box
    rows[2][4] = "4_0"  # poster_002's only box
    rows[3][1:3] = ["2560", "1600"]  # poster_003 declared at twice its size
    scene_image("val/poster_004.jpg", 1280, 800, bad / "images" / "val" / "poster_004.jpg")  # a second poster_004
    write_csv(bad / "annotations" / "labels.csv", rows)

    answers = [upload(client, zip_folder(good, tmp_path / "good.zip"), "posters")]
    answers.append(upload(client, zip_folder(bad, tmp_path / "bad.zip"), "posters-bad"))
    assert [a.status_code for a in answers] == [202, 202], [a.text for a in answers]
    output = run_worker_in(Path.cwd(), settings)

    with redis.Redis.from_url(settings.redis_url) as connection:
        jobs = [fetch_job(a.json()["job_id"], connection) for a in answers]
        assert [j.get_status() for j in jobs] == [JobStatus.FINISHED, JobStatus.FINISHED], (
            [j.meta.get("error") for j in jobs],
            output[-3000:],
        )
        good_result, bad_result = (j.return_value() for j in jobs)
        assert jobs[0].meta["counts"]["images"] == 8 and jobs[0].meta["counts"]["boxes"] == 8
    assert good_result["problems"]["counts"] == {"fatal": 0, "error": 0, "warning": 0}
    assert (Path("data") / "datasets" / "posters" / "1" / "manifest.json").is_file()  # under the relative data dir

    problems = [
        (p["severity"], p["code"], p["file"], p["where"], p["message"]) for p in bad_result["problems"]["problems"]
    ]
    by_code = {code: (severity, file, where, message) for severity, code, file, where, message in problems}
    assert [code for _, code, *_ in problems] == [
        "bad_box",
        "bad_box",
        "ambiguous_image",
        "no_valid_boxes",
        "no_valid_boxes",
        "size_mismatch",
    ], problems
    assert by_code["ambiguous_image"][1:3] == ("annotations/labels.csv", "row 6")
    assert "images/poster_004.jpg, images/val/poster_004.jpg" in by_code["ambiguous_image"][3]
    assert "poster_001.jpg: xmax 'nan'" in problems[0][4] and "poster_002.jpg: xmin '4_0'" in problems[1][4]
    assert by_code["size_mismatch"][0] == "warning" and "images/poster_003.jpg" in by_code["size_mismatch"][3]
    assert (
        bad_result["summary"]["totals"]["train"]["images"] + bad_result["summary"]["totals"]["validation"]["images"]
        == 3
    )  # posters 0, 3 and 5: the nan, 4_0 and ambiguous ones are dropped, never background images


def test_an_entry_name_too_long_for_the_file_system_is_a_400_at_upload_and_nothing_is_queued(
    relative_gateway: tuple[TestClient, GatewaySettings], tmp_path: Path
) -> None:
    client, settings = relative_gateway
    good = tmp_path / "good"
    write_csv(good / "annotations" / "labels.csv", wally_posters(good, 2))
    before = tree(settings.data_dir)
    for case in archive_cases():
        archive = build_archive(case, tmp_path / f"{case['name']}.zip", with_dataset=good)
        answer = upload(client, archive, "posters")
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert error["code"] == "invalid_input" and case["reason"] in error["message"]
        assert str(tmp_path) not in error["message"] and str(Path.cwd()) not in error["message"]
    assert queued(settings.redis_url) == 0
    assert tree(settings.data_dir) == before


@pytest.mark.integration
def test_cli_import_of_an_archive_and_a_folder_with_the_default_relative_data_dir(tmp_path: Path) -> None:
    """``spotter dataset import`` as a user runs it: from their project folder, no ``SPOTTER_DATA_DIR`` (so
    ``data/``), a zip and a relative folder path."""
    cwd = tmp_path / "project"
    src = cwd / "posters"
    rows = wally_posters(src, 6)
    rows[5][7] = "nan"  # poster_005's only box
    write_csv(src / "annotations" / "labels.csv", rows)
    zip_folder(src, cwd / "posters.zip")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOTTER_")}
    env |= {"SPOTTER_LOG_JSON": "false", "TF_CPP_MIN_LOG_LEVEL": "2"}
    results = []
    for source, name in (("posters.zip", "zipped"), ("posters", "folder")):
        done = subprocess.run(
            spotter_command("dataset", "import", source, "--name", name, "--format", "csv", "--json"),
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        results.append(json.loads(done.stdout))
    for result, name in zip(results, ("zipped", "folder"), strict=True):
        assert (result["dataset"], result["version"]) == (name, 1)
        assert (cwd / "data" / "datasets" / name / "1" / "manifest.json").is_file()
        totals = result["summary"]["totals"]
        assert sum(t["images"] for t in totals.values()) == 5  # poster_005 is dropped, not a background image
        codes = [(p["code"], p["file"]) for p in result["problems"]["problems"]]
        assert codes == [("bad_box", "annotations/labels.csv"), ("no_valid_boxes", "annotations/labels.csv")]
        assert "poster_005.jpg: ymax 'nan'" in result["problems"]["problems"][0]["message"]
