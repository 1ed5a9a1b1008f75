"""A worker killed with SIGKILL, for real: its children die with it, its port and its record go, and its job is given
up as abandoned, then failed or run again (resuming) by the next worker. Real worker subprocesses on the real Redis.
"""

from __future__ import annotations

import os
import signal
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import generate_latest
from rq import worker_registration
from rq.job import JobStatus

from services.jobs.queues import ALL_QUEUES, TRAIN_QUEUE, enqueue, fetch_job, get_queue
from services.jobs.records import record
from services.processes import free_port
from services.worker.config import WorkerSettings
from services.worker.metrics import worker_registry
from services.worker.worker import sweep_leftovers
from tests.worker.helpers import children, group_members, running, start_worker
from tests.worker.jobs_for_tests import MODULE

pytestmark = pytest.mark.integration

WAIT = 60.0
"""Seconds any one step may take (generous: the machine is shared); RQ's own default alone would need > 60 s to
give up the job (heartbeat + 60 s grace, then an idle worker's maintenance every 405 s)."""


def wait_for(what: str, check: Any, timeout: float = WAIT, log: Any = lambda: "") -> Any:
    """Poll ``check()`` until it returns something truthy; that value. Fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f}s\n{log()[-3000:]}"
        time.sleep(0.1)


def workers_alive(connection: redis.Redis, queue: str = TRAIN_QUEUE) -> float:
    text = generate_latest(worker_registry(connection, list(ALL_QUEUES))).decode()
    line = next(x for x in text.splitlines() if x.startswith(f'spotter_workers_alive{{queue="{queue}"}}'))
    return float(line.split()[-1])


def can_bind(port: int) -> bool:
    """Whether a server could listen on ``port`` now (as the worker's metrics server does: all addresses)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
        return True


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        return str(answer.read().decode())


@pytest.mark.parametrize("retries", [0, 1])
def test_a_killed_worker_takes_its_children_and_port_and_its_job_is_given_up(
    retries: int, settings: WorkerSettings, connection: redis.Redis, tmp_path: Path
) -> None:
    port = free_port()
    marker = tmp_path / "steps-done"
    body = {"marker": str(marker), "steps": 40, "step_seconds": 0.25}
    job = enqueue(
        connection, TRAIN_QUEUE, f"{MODULE}.steps_job", body, job_type="test", retries=retries, retry_intervals=[3]
    )
    upload = settings.data_dir / "uploads" / job.id
    upload.mkdir(parents=True)
    logs = tmp_path / "logs"
    metrics_env = {"SPOTTER_WORKER_METRICS_PORT": str(port)}
    first = start_worker(
        settings, logs, lambda: fetch_job(job.id, connection).meta.get("step", 0) >= 3, name="first", env=metrics_env
    )
    try:
        assert "spotter_workers_alive" in scrape(port)
        horse = fetch_job(job.id, connection).meta["pid"]
        kids = children(first.pid)  # the work-horse and RQ's scheduler process
        assert horse in kids and len(kids) >= 2, kids
        group = os.getpgid(horse)  # the horse leads its own process group
        assert workers_alive(connection) == 1

        os.kill(first.pid, signal.SIGKILL)  # no clean-up at all
        first.proc.wait(10)
        killed_at = time.monotonic()
        wait_for("the worker's children ended", lambda: not any(running(pid) for pid in kids), log=first.log)
        assert group_members(group) == [] and children(first.pid) == []
        wait_for("the metrics port is free", lambda: can_bind(port))
        step_at_death = int(marker.read_text())
        time.sleep(1.0)
        assert int(marker.read_text()) == step_at_death  # the job did not go on without its worker
        wait_for("the dead worker is not counted", lambda: workers_alive(connection) == 0)
        for key in worker_registration.get_keys(queue=get_queue(TRAIN_QUEUE, connection)):
            assert connection.pttl(key) != -1, f"{key} has no expiry"  # no ghost
        # No worker is left to give the job up, but its record already says why it does not move.
        shown = wait_for(
            "the record shows the job abandoned",
            lambda: (r := record(fetch_job(job.id, connection), settings.data_dir))["stage"] == "abandoned" and r,
        )
        assert shown["state"] == "started" and "heartbeats" in shown["message"]
    finally:
        first.kill()

    seen: list[tuple[str, Any, Any]] = []

    def given_up() -> bool:
        shown = record(fetch_job(job.id, connection), settings.data_dir)
        seen.append((shown["state"], shown["stage"], (shown["error"] or {}).get("code")))
        assert not (shown["state"] == "scheduled" and shown["stage"] == "failed"), shown
        # The callback records "abandoned" just before RQ moves the job on: wait until it has.
        return shown["state"] != "started" and (shown["error"] or {}).get("code") == "abandoned"

    second = start_worker(settings, logs, lambda: True, name="second", env=metrics_env)  # the same port again
    try:
        wait_for("the job is given up as abandoned", given_up, log=second.log)
        abandoned_after = time.monotonic() - killed_at
        assert abandoned_after < WAIT  # RQ alone: > 60 s
        if retries:
            assert seen[-1] == ("scheduled", "retrying", "abandoned"), seen
            wait_for(
                "the retry finished",
                lambda: fetch_job(job.id, connection).get_status() == JobStatus.FINISHED,
                log=second.log,
            )
            result = fetch_job(job.id, connection).return_value()
            assert result["resumed_from"] == step_at_death > 0  # it went on from where it was, not from the start
            assert int(marker.read_text()) == 40
        else:
            assert seen[-1] == ("failed", "failed", "abandoned"), seen
            assert "AbandonedJobError" in fetch_job(job.id, connection).latest_result().exc_string
            assert sweep_leftovers(settings.data_dir, connection, stale_hours=6) == 1  # what it left goes
            assert not upload.exists()
        text = scrape(port)  # the second worker serves its metrics on the dead one's port
        assert f'spotter_workers_alive{{queue="{TRAIN_QUEUE}"}} 1.0' in text
        print(f"abandoned {abandoned_after:.1f}s after the kill (retries={retries})")
    finally:
        second.stop()
