"""Run ``spotter worker`` as a real subprocess with a test's settings."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

from services.worker.config import WorkerSettings
from tests.support.processes import ServerProcess, spotter_command, start_server

REPO = Path(__file__).resolve().parents[2]


def worker_env(settings: WorkerSettings) -> dict[str, str]:
    """The environment of a worker subprocess with the same settings as ``settings``."""
    return {
        "SPOTTER_REDIS_URL": settings.redis_url,
        "SPOTTER_DATA_DIR": str(settings.data_dir),
        "SPOTTER_WORKER_METRICS_PORT": "0",
        "SPOTTER_JOB_MONITORING_INTERVAL": str(settings.job_monitoring_interval),
        "SPOTTER_HEARTBEAT_GRACE_SECONDS": str(settings.heartbeat_grace_seconds),
        "SPOTTER_LOG_JSON": "false",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


def run_burst_worker(settings: WorkerSettings, log_dir: Path, *args: str, timeout: float = 240) -> str:
    """Run ``spotter worker --burst`` until the queues are empty; its output (it must exit 0)."""
    import os

    done = subprocess.run(
        spotter_command("worker", "--burst", *args),
        env={**os.environ, **worker_env(settings)},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / "worker.log").write_text(done.stdout + done.stderr)
    assert done.returncode == 0, f"worker exited with {done.returncode}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def _process_stats() -> Iterator[tuple[int, list[str]]]:
    """Each live process's pid with the fields of ``/proc/<pid>/stat`` after its name (state, ppid, pgrp, ...)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended while we looked
        yield int(stat.parent.name), fields


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (a worker's work-horse and its scheduler)."""
    return [child for child, fields in _process_stats() if int(fields[1]) == pid]


def start_worker(
    settings: WorkerSettings,
    log_dir: Path,
    ready: Callable[[], bool],
    *,
    name: str = "worker",
    env: dict[str, str] | None = None,
) -> ServerProcess:
    """A long-running ``spotter worker``; ``ready`` says when the test may go on (e.g. a job has started); ``env``
    overrides the worker's environment (``SPOTTER_WORKER_METRICS_PORT``...); its log is ``<log_dir>/<name>.log``."""
    return start_server(
        name,
        spotter_command("worker"),
        log_dir=log_dir,
        ready=ready,
        env={**worker_env(settings), **(env or {})},
        cwd=REPO,
    )


def process_state(pid: int) -> str | None:
    """The state letter of a process (``R``, ``S``, ``Z``...), or None when there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is not: it has ended, it only waits to be reaped)."""
    return process_state(pid) not in (None, "Z")


def group_members(pgid: int) -> list[int]:
    """The live processes of process group ``pgid``."""
    return [member for member, fields in _process_stats() if int(fields[2]) == pgid and fields[0] != "Z"]
