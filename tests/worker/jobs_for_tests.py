"""Job functions for the worker's tests (TensorFlow-free), importable by a worker subprocess started in the repo."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from services.errors import InvalidInput
from services.worker.progress import finish, job_run

MODULE = "tests.worker.jobs_for_tests"


def progress_job(body: dict[str, Any]) -> dict[str, Any]:
    with job_run("test") as run:
        for step in range(1, 5):
            run.update(progress=step * 25.0, stage="working", message=f"step {step}", counts={"steps": step})
        run.write_json("extra.json", {"steps": 4})
        return finish(run, {"answer": body["x"] * 2})


def bad_input_job(body: dict[str, Any]) -> dict[str, Any]:
    with job_run("test"):
        raise InvalidInput("the input is bad", details={"row": 3})


def flaky_job(body: dict[str, Any]) -> dict[str, Any]:
    """Fails the first time (an unexpected error), succeeds the second."""
    marker = Path(body["marker"])
    with job_run("test") as run:
        attempts = int(marker.read_text()) + 1 if marker.exists() else 1
        marker.write_text(str(attempts))
        if attempts == 1:
            raise ConnectionError("redis went away")
        return finish(run, {"attempts": attempts})


def sleep_job(body: dict[str, Any]) -> dict[str, Any]:
    with job_run("test") as run:
        run.update(stage="sleeping", force=True)
        time.sleep(body["seconds"])
        return finish(run, {})


def suicide_job(body: dict[str, Any]) -> dict[str, Any]:
    with job_run("test") as run:
        run.update(stage="about to die", force=True)
        os.kill(os.getpid(), signal.SIGKILL)
        return finish(run, {})


def steps_job(body: dict[str, Any]) -> dict[str, Any]:
    """``steps`` steps of ``step_seconds`` each, with progress; a rerun resumes after the last step done, which it
    keeps in the ``marker`` file (as training keeps checkpoints)."""
    marker = Path(body["marker"])
    steps = int(body["steps"])
    with job_run("test") as run:
        done = int(marker.read_text()) if marker.exists() else 0
        run.update(stage="working", force=True, resumed_from=done)
        for step in range(done + 1, steps + 1):
            time.sleep(float(body["step_seconds"]))
            marker.write_text(str(step))
            run.update(progress=100.0 * step / steps, message=f"step {step}/{steps}", step=step, force=True)
        return finish(run, {"steps": steps, "resumed_from": done})


def path_error_job(body: dict[str, Any]) -> dict[str, Any]:
    """Fails as an OS call on a long name in the data folder would (the path is in the exception's text)."""
    with job_run("test"):
        raise OSError(36, "File name too long", body["path"])


def bad_path_input_job(body: dict[str, Any]) -> dict[str, Any]:
    """Refuses its input with a message that names a file of the server."""
    with job_run("test"):
        raise InvalidInput(f"cannot read {body['path']}: not an archive")
