"""The worker's metrics against the real Redis: outcomes, live workers, queue states, and scrapes that change
nothing. (Jobs counted across a real fork are in test_prometheus.py and tests/worker/.)"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from prometheus_client import generate_latest
from rq import Worker
from rq.job import JobStatus

from services.jobs.queues import DATA_QUEUE, SERIALIZER, TRAIN_QUEUE, enqueue, get_queue
from services.worker.metrics import job_outcome, serve_metrics, worker_registry


@pytest.fixture
def connection(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def scrape(connection: redis.Redis) -> dict[str, float]:
    """``name{labels}`` -> value, as a scrape of the worker's registry shows them."""
    samples = {}
    for line in generate_latest(worker_registry(connection)).decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


@pytest.mark.parametrize(
    ("status", "meta", "outcome"),
    [
        (JobStatus.FINISHED, {}, "finished"),
        (JobStatus.FAILED, {"error": {"code": "invalid_input", "message": "not a zip"}}, "rejected"),
        (JobStatus.FAILED, {"error": {"code": "dataset_not_found", "message": "no such dataset"}}, "rejected"),
        (JobStatus.FAILED, {"error": {"code": "internal", "message": "KeyError: 'x'"}}, "failed"),
        (JobStatus.FAILED, {"error": {"code": "killed", "message": "SIGKILL"}}, "failed"),
        (JobStatus.FAILED, {}, "failed"),
        (JobStatus.STOPPED, {"error": {"code": "stopped", "message": "on request"}}, "stopped"),
        (JobStatus.CANCELED, {}, "canceled"),
        (JobStatus.QUEUED, {"error": {"code": "internal", "message": "flaky"}}, "retried"),
        (JobStatus.SCHEDULED, {}, "retried"),
        (None, {}, "retried"),
    ],
)
def test_outcomes(status: JobStatus | None, meta: dict[str, Any], outcome: str) -> None:
    assert job_outcome(status, meta) == outcome


def test_job_series_exist_before_the_first_job(connection: redis.Redis) -> None:
    """At 0 from the start, so that increase() and the SpotterJobsFailing alert see the very first failure."""
    samples = scrape(connection)
    for job_type in ("import", "train", "evaluate", "export", "active-learning"):
        for outcome in ("finished", "failed", "rejected"):
            assert f'spotter_jobs_total{{outcome="{outcome}",type="{job_type}"}}' in samples


def test_queues_and_live_workers_come_from_redis(connection: redis.Redis) -> None:
    samples = scrape(connection)
    for queue in (DATA_QUEUE, TRAIN_QUEUE):
        assert samples[f'spotter_workers_alive{{queue="{queue}"}}'] == 0
        assert samples[f'spotter_queue_jobs{{queue="{queue}",state="queued"}}'] == 0

    for n in range(3):
        enqueue(connection, DATA_QUEUE, "services.worker.jobs.import_dataset_job", {"n": n}, job_type="import")
    worker = Worker([get_queue(DATA_QUEUE, connection)], connection=connection, serializer=SERIALIZER)
    worker.register_birth()
    samples = scrape(connection)
    assert samples[f'spotter_queue_jobs{{queue="{DATA_QUEUE}",state="queued"}}'] == 3
    assert samples[f'spotter_workers_alive{{queue="{DATA_QUEUE}"}}'] == 1
    assert samples[f'spotter_workers_alive{{queue="{TRAIN_QUEUE}"}}'] == 0  # listened to by nobody

    # A worker killed without a word: its heartbeat key expires, its name stays in RQ's set until a clean-up.
    connection.delete(worker.key)
    assert connection.sismember(f"rq:workers:{DATA_QUEUE}", worker.key)
    assert scrape(connection)[f'spotter_workers_alive{{queue="{DATA_QUEUE}"}}'] == 0

    # A ghost: the record written again without an expiry (by a work-horse that outlived its worker) is not alive.
    connection.hset(worker.key, "successful_job_count", 1)
    assert connection.ttl(worker.key) == -1
    assert scrape(connection)[f'spotter_workers_alive{{queue="{DATA_QUEUE}"}}'] == 0
    # Nor is a worker that registered its death (its record stays a minute).
    other = Worker([get_queue(DATA_QUEUE, connection)], connection=connection, serializer=SERIALIZER)
    other.register_birth()
    assert scrape(connection)[f'spotter_workers_alive{{queue="{DATA_QUEUE}"}}'] == 1
    other.register_death()
    connection.sadd(f"rq:workers:{DATA_QUEUE}", other.key)  # as if still listed
    assert scrape(connection)[f'spotter_workers_alive{{queue="{DATA_QUEUE}"}}'] == 0


def test_a_scrape_changes_nothing_in_redis(connection: redis.Redis) -> None:
    """RQ's registry counts clean up by default (failing abandoned jobs, running their callbacks); a scrape must
    only read."""
    queue = get_queue(TRAIN_QUEUE, connection)
    job = enqueue(connection, TRAIN_QUEUE, "services.worker.jobs.import_dataset_job", {}, job_type="train")
    queue.remove(job.id)
    started = queue.started_job_registry
    connection.zadd(started.key, {f"{job.id}:lost-execution": time.time() - 3600})  # its heartbeat ran out long ago
    before = {key: connection.type(key) for key in connection.keys("*")}
    samples = scrape(connection)
    assert samples[f'spotter_queue_jobs{{queue="{TRAIN_QUEUE}",state="started"}}'] == 1
    assert connection.zcard(started.key) == 1 and job.get_status(refresh=True) == JobStatus.QUEUED
    assert {key: connection.type(key) for key in connection.keys("*")} == before


def test_a_taken_port_leaves_the_worker_working(connection: redis.Redis) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert serve_metrics(taken.getsockname()[1], connection) is False
