"""The worker against the real Redis: progress in meta, artifacts, clear failures, retries, killed and stopped jobs."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import redis
from prometheus_client import generate_latest
from rq.command import send_stop_job_command
from rq.job import JobStatus
from rq.registry import StartedJobRegistry

from services.worker.config import WorkerSettings
from services.worker.metrics import worker_registry
from services.worker.progress import RESULT_FILE, job_dir
from services.worker.queues import ALL_QUEUES, DATA_QUEUE, SERIALIZER, TRAIN_QUEUE, enqueue, fetch_job
from services.worker.worker import build_worker, sweep_leftovers
from tests.worker.helpers import children, run_burst_worker, start_worker
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
@pytest.mark.parametrize("retries", [0, 1])
def test_a_killed_worker_leaves_its_job_visibly_failed_or_requeued(
    retries: int, settings: WorkerSettings, connection: redis.Redis, tmp_path: Path
) -> None:
    job = enqueue(connection, TRAIN_QUEUE, f"{MODULE}.sleep_job", {"seconds": 120}, job_type="test", retries=retries)
    upload = settings.data_dir / "uploads" / job.id
    upload.mkdir(parents=True)
    worker = start_worker(
        settings, tmp_path / "logs", lambda: fetch_job(job.id, connection).meta["stage"] == "sleeping"
    )
    horse = fetch_job(job.id, connection).meta["pid"]
    others = children(worker.proc.pid)  # the horse and RQ's scheduler process
    assert horse in others
    worker.kill()  # SIGKILL: no clean-up at all
    for pid in others:
        os.kill(pid, signal.SIGKILL)
    assert fetch_job(job.id, connection).get_status() == JobStatus.STARTED  # nobody knows yet

    # Its heartbeat would expire about a minute after the last one (job_monitoring_interval + 60 s); RQ's registry
    # clean-up (every worker's maintenance, or a reader) then gives the job up. Here the clock is moved, not waited.
    registry = StartedJobRegistry(TRAIN_QUEUE, connection=connection, serializer=SERIALIZER)
    registry.cleanup(timestamp=time.time() + 3600)
    given_up = fetch_job(job.id, connection)
    if retries:
        assert given_up.get_status() == JobStatus.QUEUED  # it will run again
        assert upload.exists()
    else:
        assert given_up.get_status() == JobStatus.FAILED
        assert given_up.meta["error"]["code"] == "abandoned"
        assert "AbandonedJobError" in given_up.latest_result().exc_string
        assert sweep_leftovers(settings.data_dir, connection, stale_hours=6) == 1  # a new worker sweeps
        assert not upload.exists()


@pytest.mark.integration
def test_the_worker_command(settings: WorkerSettings, connection: redis.Redis, tmp_path: Path) -> None:
    job = enqueue(connection, TRAIN_QUEUE, f"{MODULE}.progress_job", {"x": 2}, job_type="test")
    run_burst_worker(settings, tmp_path / "logs", "--queue", DATA_QUEUE)  # not its queue
    assert fetch_job(job.id, connection).get_status() == JobStatus.QUEUED
    run_burst_worker(settings, tmp_path / "logs")
    assert fetch_job(job.id, connection).return_value()["answer"] == 4
