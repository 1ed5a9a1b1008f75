"""A worker's settings on a temporary data folder and the test Redis database, and helpers to run jobs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from services.jobs.queues import redis_connection
from services.worker.config import WorkerSettings
from services.worker.context import set_worker_settings


@pytest.fixture
def settings(tmp_path: Path, redis_url: str) -> Iterator[WorkerSettings]:
    s = WorkerSettings(
        _env_file=None,
        data_dir=tmp_path / "data",
        redis_url=redis_url,
        worker_metrics_port=0,
        job_monitoring_interval=2,
        heartbeat_grace_seconds=3,
        log_json=False,
    )
    set_worker_settings(s)
    yield s
    set_worker_settings(None)


@pytest.fixture
def connection(redis_url: str) -> Iterator[redis.Redis]:
    client = redis_connection(redis_url)
    yield client
    client.close()
