"""The worker against the real Redis: progress in meta, artifacts, clear failures, retries, killed and stopped jobs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis
from prometheus_client import generate_latest
from rq.command import send_stop_job_command
from rq.job import JobStatus

from services.jobs.queues import ALL_QUEUES, DATA_QUEUE, SERIALIZER, TRAIN_QUEUE, enqueue, fetch_job
from services.jobs.records import job_dir, record
from services.worker.config import WorkerSettings
from services.worker.metrics import worker_registry
from services.worker.progress import RESULT_FILE
from services.worker.worker import build_worker
from tests.worker.helpers import run_burst_worker, start_worker
from tests.worker.jobs_for_tests import MODULE


def burst(connection: redis.Redis) -> None:
    """A worker in this process (it forks a work-horse per job, like the real one) until the queues are empty."""
    build_worker(list(ALL_QUEUES), connection).work(burst=True)


def result_file(settings: WorkerSettings, job_id: str) -> dict:
    return json.loads((job_dir(settings.data_dir, job_id) / RESULT_FILE).read_text())


def test_progress_result_and_artifacts(settings: WorkerSettings, connection: redis.Redis) -> None:
    job = enqueue(connection, DATA_QUEUE, f"{MODULE}.progress_job", {"x": 21}, job_type="test")
    assert fetch_job(job.id, connection).meta == {
        "type": "test",
        "progress": 0.0,
        "stage": "queued",
        "message": "",
        "counts": {},
    }
    burst(connection)
    done = fetch_job(job.id, connection)
    assert done.get_status() == JobStatus.FINISHED
    meta = done.meta
    assert (meta["progress"], meta["stage"], meta["message"], meta["counts"]) == (
        100.0,
        "finished",
        "step 4",
        {"steps": 4},
    )
    assert meta["artifacts"] == str(job_dir(settings.data_dir, job.id)) and "error" not in meta
    result = done.return_value()
    assert result["answer"] == 42 and result["artifacts"]["dir"] == meta["artifacts"]
    assert result_file(settings, job.id)["status"] == "finished"
    artifacts = job_dir(settings.data_dir, job.id)
    assert json.loads((artifacts / "extra.json").read_text()) == {"steps": 4}
    assert f"job {job.id} (test) finished" in (artifacts / "log.txt").read_text()


def test_bad_input_fails_at_once_with_its_message_and_is_not_retried(
    settings: WorkerSettings, connection: redis.Redis
) -> None:
    job = enqueue(connection, DATA_QUEUE, f"{MODULE}.bad_input_job", {}, job_type="test", retries=3)
    burst(connection)
    failed = fetch_job(job.id, connection)
    assert failed.get_status() == JobStatus.FAILED
    error = {"code": "invalid_input", "message": "the input is bad", "details": {"row": 3}}
    assert failed.meta["error"] == error and failed.meta["stage"] == "failed"
    assert failed.retries_left == 0
    assert "InvalidInput: the input is bad" in failed.latest_result().exc_string
    assert result_file(settings, job.id)["error"] == error


def test_an_unexpected_failure_is_retried(settings: WorkerSettings, connection: redis.Redis, tmp_path: Path) -> None:
    marker = tmp_path / "attempts"
    job = enqueue(connection, DATA_QUEUE, f"{MODULE}.flaky_job", {"marker": str(marker)}, job_type="test", retries=1)
    burst(connection)
    done = fetch_job(job.id, connection)
    assert done.get_status() == JobStatus.FINISHED and done.return_value()["attempts"] == 2
    assert "error" not in done.meta  # the retry started clean


def test_a_killed_work_horse_ends_the_job_failed_with_a_reason(
    settings: WorkerSettings, connection: redis.Redis
) -> None:
    job = enqueue(connection, TRAIN_QUEUE, f"{MODULE}.suicide_job", {}, job_type="test", retries=0)
    upload = settings.data_dir / "uploads" / job.id
    upload.mkdir(parents=True)
    (upload / "archive").write_bytes(b"zip")
    burst(connection)
    failed = fetch_job(job.id, connection)
    assert failed.get_status() == JobStatus.FAILED
    assert failed.meta["error"]["code"] == "killed" and "SIGKILL" in failed.meta["error"]["message"]
    assert result_file(settings, job.id)["status"] == "failed"
    assert not upload.exists()  # the job has ended: its upload goes


def test_metrics_count_jobs_by_type_and_outcome(settings: WorkerSettings, connection: redis.Redis) -> None:
    enqueue(connection, DATA_QUEUE, f"{MODULE}.progress_job", {"x": 1}, job_type="test")
    enqueue(connection, DATA_QUEUE, f"{MODULE}.bad_input_job", {}, job_type="test", retries=0)
    text = generate_latest(worker_registry(connection, list(ALL_QUEUES))).decode()
    assert 'spotter_queue_jobs{queue="spotter-data",state="queued"} 2.0' in text
    before = _sample(text, 'spotter_jobs_total{outcome="rejected",type="test"}')
    burst(connection)
    text = generate_latest(worker_registry(connection, list(ALL_QUEUES))).decode()
    assert _sample(text, 'spotter_jobs_total{outcome="rejected",type="test"}') == before + 1
    assert 'spotter_queue_jobs{queue="spotter-data",state="failed"} 1.0' in text
    assert "spotter_job_duration_seconds_bucket" in text and "spotter_workers_alive" in text


def _sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.integration
def test_a_job_stopped_on_request_ends_stopped(
    settings: WorkerSettings, connection: redis.Redis, tmp_path: Path
) -> None:
    job = enqueue(connection, TRAIN_QUEUE, f"{MODULE}.sleep_job", {"seconds": 120}, job_type="test")
    worker = start_worker(
        settings, tmp_path / "logs", lambda: fetch_job(job.id, connection).meta["stage"] == "sleeping"
    )
    try:
        send_stop_job_command(connection, job.id, serializer=SERIALIZER)
        deadline = time.monotonic() + 30
        while fetch_job(job.id, connection).get_status() != JobStatus.STOPPED:
            assert time.monotonic() < deadline, worker.log()
            time.sleep(0.2)
        stopped = fetch_job(job.id, connection)
        assert stopped.meta["error"]["code"] == "stopped"
        deadline = time.monotonic() + 10
        while not (job_dir(settings.data_dir, job.id) / RESULT_FILE).exists():
            assert time.monotonic() < deadline, worker.log()
            time.sleep(0.2)
        assert result_file(settings, job.id)["status"] == "stopped"
    finally:
        worker.stop()


@pytest.mark.integration
def test_the_worker_command(settings: WorkerSettings, connection: redis.Redis, tmp_path: Path) -> None:
    job = enqueue(connection, TRAIN_QUEUE, f"{MODULE}.progress_job", {"x": 2}, job_type="test")
    run_burst_worker(settings, tmp_path / "logs", "--queue", DATA_QUEUE)  # not its queue
    assert fetch_job(job.id, connection).get_status() == JobStatus.QUEUED
    run_burst_worker(settings, tmp_path / "logs")
    assert fetch_job(job.id, connection).return_value()["answer"] == 4


def test_a_job_waiting_for_its_retry_shows_retrying_not_failed(
    settings: WorkerSettings, connection: redis.Redis, tmp_path: Path
) -> None:
    marker = tmp_path / "attempts"
    job = enqueue(
        connection,
        DATA_QUEUE,
        f"{MODULE}.flaky_job",
        {"marker": str(marker)},
        job_type="test",
        retries=1,
        retry_intervals=[600],
    )
    burst(connection)  # the first run fails; the retry waits in the scheduled registry
    shown = record(fetch_job(job.id, connection), settings.data_dir)
    assert (shown["state"], shown["stage"]) == ("scheduled", "retrying")
    assert shown["error"] == {"code": "internal", "message": "ConnectionError: redis went away"}
    assert result_file(settings, job.id)["status"] == "retrying"


def test_job_errors_and_records_carry_no_server_paths(settings: WorkerSettings, connection: redis.Redis) -> None:
    data = settings.data_dir.resolve()
    inside = data / "uploads" / "abc" / ("x" * 300 + ".jpg")
    failed = enqueue(connection, DATA_QUEUE, f"{MODULE}.path_error_job", {"path": str(inside)}, job_type="test")
    refused = enqueue(
        connection, DATA_QUEUE, f"{MODULE}.bad_path_input_job", {"path": "/srv/secret/layout/a.zip"}, job_type="test"
    )
    done = enqueue(connection, DATA_QUEUE, f"{MODULE}.progress_job", {"x": 1}, job_type="test")
    for _ in range(2):  # the OSError is retried once, then fails
        burst(connection)
    shown = {j.id: record(fetch_job(j.id, connection), settings.data_dir) for j in (failed, refused, done)}
    assert shown[failed.id]["error"] == {
        "code": "internal",
        "message": f"OSError: [Errno 36] File name too long: 'uploads/abc/{'x' * 300}.jpg'",
    }
    assert shown[refused.id]["error"]["message"] == "cannot read a.zip: not an archive"
    assert shown[refused.id]["state"] == "failed" and shown[refused.id]["stage"] == "failed"
    assert result_file(settings, failed.id)["error"] == shown[failed.id]["error"]
    assert shown[done.id]["result"]["artifacts"]["dir"] == f"jobs/{done.id}"
    assert result_file(settings, done.id)["result"]["artifacts"]["log"] == f"jobs/{done.id}/log.txt"  # served too
    assert {a["path"] for a in shown[done.id]["artifacts"]} >= {f"jobs/{done.id}/extra.json"}
    for body in shown.values():
        text = json.dumps(body)
        assert str(data) not in text and str(settings.data_dir) not in text and "/srv/" not in text, text


@pytest.mark.integration
def test_bad_input_is_one_log_line_and_a_transient_error_is_retried(
    settings: WorkerSettings, connection: redis.Redis, tmp_path: Path
) -> None:
    bad = enqueue(connection, DATA_QUEUE, f"{MODULE}.bad_input_job", {}, job_type="test", retries=3)
    flaky = enqueue(
        connection, DATA_QUEUE, f"{MODULE}.flaky_job", {"marker": str(tmp_path / "m")}, job_type="test", retries=1
    )
    output = run_burst_worker(settings, tmp_path / "logs")
    mentions = [line for line in output.splitlines() if "the input is bad" in line]
    assert len(mentions) == 1 and "refused" in mentions[0], output
    assert "InvalidInput" not in output, output  # no traceback of it (one would name the class)
    assert "Traceback" in output and "ConnectionError: redis went away" in output  # the transient error's
    assert fetch_job(bad.id, connection).get_status() == JobStatus.FAILED
    assert fetch_job(bad.id, connection).retries_left == 0
    assert fetch_job(flaky.id, connection).return_value()["attempts"] == 2
