"""Helpers for the jobs tests that run real workers: start ``spotter worker`` processes on a test's data folder and
model root, and follow jobs through the API (TensorFlow-free: TensorFlow lives in the workers' work-horses)."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from services.processes import ServerProcess, spotter_command, start_server
from tests.conftest import REPO, TEST_REDIS_DB
from tests.gateway.helpers import RunningGateway, gateway_settings, running_gateway
from tests.support.modelserver import ModelServerHandle, running_model_server

REDIS_URL = f"redis://127.0.0.1:6379/{TEST_REDIS_DB}"
KEY = {"X-API-Key": "k1"}
ENDED = ("finished", "failed", "stopped", "canceled")


def flush() -> None:
    with redis.Redis.from_url(REDIS_URL) as connection:
        connection.flushdb()


def worker_env(data_dir: Path, model_root: Path) -> dict[str, str]:
    return {
        "SPOTTER_REDIS_URL": REDIS_URL,
        "SPOTTER_DATA_DIR": str(data_dir),
        "SPOTTER_MODEL_ROOT": str(model_root),
        "SPOTTER_WORKER_METRICS_PORT": "0",
        "SPOTTER_JOB_MONITORING_INTERVAL": "2",
        "SPOTTER_LOG_JSON": "false",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


def start_worker(name: str, data_dir: Path, model_root: Path, log_dir: Path) -> ServerProcess:
    """A long-running ``spotter worker`` on both queues, ready once it listens."""
    log = log_dir / f"{name}.log"
    return start_server(
        name,
        spotter_command("worker", "--name", f"{name}-{time.monotonic_ns()}"),
        log_dir=log_dir,
        ready=lambda: log.exists() and "worker listening on" in log.read_text(errors="replace"),
        env=worker_env(data_dir, model_root),
        cwd=REPO,
        timeout=60,
    )


def wait_job(
    http: httpx.Client, job_id: str, *, timeout: float, workers: list[ServerProcess], until: tuple[str, ...] = ENDED
) -> dict[str, Any]:
    """Poll ``GET /v1/jobs/{id}`` until the job's state is one of ``until``; fails with the workers' logs."""
    deadline = time.monotonic() + timeout
    record: dict[str, Any] = {}
    while time.monotonic() < deadline:
        record = http.get(f"/v1/jobs/{job_id}", headers=KEY).json()
        if record.get("state") in until:
            return record
        time.sleep(0.5)
    logs = "\n".join(f"--- {w.name}\n{w.log()[-3000:]}" for w in workers)
    raise AssertionError(f"job {job_id} is {record.get('state')} after {timeout} s: {record}\n{logs}")


def zip_folder(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def upload(http: httpx.Client, name: str, fmt: str, archive: bytes, **fields: str) -> str:
    """``POST /v1/datasets``; the import job's id."""
    answer = http.post(
        "/v1/datasets",
        files={"file": (f"{name}.zip", archive, "application/zip")},
        data={"name": name, "format": fmt, **fields},
        headers=KEY,
    )
    assert answer.status_code == 202, answer.text
    return str(answer.json()["job_id"])


@dataclass
class JobStack:
    """A model server watching ``models``, workers publishing into it, and a gateway over both (key ``k1``)."""

    http: httpx.Client
    gateway: RunningGateway
    model_server: ModelServerHandle
    workers: list[ServerProcess]


@contextmanager
def running_job_stack(base: Path, worker_names: tuple[str, ...], *, http_timeout: float = 30) -> Iterator[JobStack]:
    """The whole serving and training path on ``base/{data,models,logs}`` with a flushed Redis database; whatever is
    already in ``base/models`` is served. Everything is stopped and the database flushed again afterwards."""
    data, models, logs = base / "data", base / "models", base / "logs"
    models.mkdir(parents=True, exist_ok=True)
    flush()
    workers: list[ServerProcess] = []
    try:
        with running_model_server(models, log_dir=logs, poll_seconds=0.5) as model_server:
            workers += [start_worker(name, data, models, logs) for name in worker_names]
            settings = gateway_settings(
                model_server.grpc_target, model_root=models, data_dir=data, redis_url=REDIS_URL, api_keys="k1"
            )
            with running_gateway(settings) as gateway, httpx.Client(base_url=gateway.url, timeout=http_timeout) as http:
                yield JobStack(http, gateway, model_server, workers)
    finally:
        for worker in workers:
            worker.stop()
        flush()
