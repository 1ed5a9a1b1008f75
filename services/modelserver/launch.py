"""Run the embedded model server (``spotter modelserver``) as a child process on free ports, and stop it.

TensorFlow-free: the server imports TensorFlow in its own process; the caller talks to it over gRPC and REST. Used
by the tests (``tests/support/modelserver.py`` re-exports it) and by ``make bench``::

    with running_model_server(root, log_dir=tmp_path, wait_for=["demo"]) as ms:
        channel = grpc.insecure_channel(ms.grpc_target)
        ...
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from services.processes import ServerProcess, free_port, port_open, spotter_command, start_server

# How long a server may take to import TensorFlow and answer, on a busy 2-core machine.
START_TIMEOUT = 120.0


@dataclass
class ModelServerHandle:
    """A running model server: where it listens, and its process (``server.log()`` has its output)."""

    server: ServerProcess
    grpc_port: int
    rest_port: int

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def status(self, model: str) -> list[dict[str, Any]]:
        """The model's ``model_version_status`` list from the REST status endpoint ([] when it has no versions)."""
        response = httpx.get(f"{self.rest_url}/v1/models/{model}", timeout=5.0)
        if response.status_code == 404:
            return []
        response.raise_for_status()
        return list(response.json()["model_version_status"])

    def wait_state(self, model: str, version: int, state: str, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until ``version`` of ``model`` reports ``state`` (e.g. ``"END"``); returns its status entry."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            self._check_alive()
            seen = self.status(model)
            for entry in seen:
                if int(entry["version"]) == version and entry["state"] == state:
                    return entry
            time.sleep(0.1)
        raise TimeoutError(
            f"{model} version {version} did not reach {state} within {timeout:.0f}s (last status {seen}):\n"
            f"{self.server.log()[-4000:]}"
        )

    def wait_available(self, model: str, version: int | None = None, timeout: float = 30.0) -> int:
        """Wait until ``model`` has an AVAILABLE version (``version`` itself when given); returns that version.

        Fails loudly, with the server's log, when it doesn't happen in time or a wanted version ends in error.
        """
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            self._check_alive()
            seen = self.status(model)
            available = [int(e["version"]) for e in seen if e["state"] == "AVAILABLE"]
            if version is None and available:
                return max(available)
            if version is not None and version in available:
                return version
            failed = [e for e in seen if e["state"] == "END" and e["status"]["error_code"] != "OK"]
            if version is not None and any(int(e["version"]) == version for e in failed):
                raise RuntimeError(f"{model} version {version} failed to load: {failed}\n{self.server.log()[-4000:]}")
            time.sleep(0.1)
        raise TimeoutError(
            f"{model} (version {version}) was not AVAILABLE within {timeout:.0f}s (last status {seen}):\n"
            f"{self.server.log()[-4000:]}"
        )

    def metrics(self) -> str:
        """The Prometheus exposition text, from TFS's metrics path."""
        response = httpx.get(f"{self.rest_url}/monitoring/prometheus/metrics", timeout=5.0)
        response.raise_for_status()
        return response.text

    def _check_alive(self) -> None:
        if not self.server.alive():
            raise RuntimeError(f"the model server exited:\n{self.server.log()[-4000:]}")


def _answers(rest_port: int, grpc_port: int) -> bool:
    if not port_open(grpc_port):
        return False
    try:
        # Any HTTP answer (404 for an unknown model) means the REST server is up.
        httpx.get(f"http://127.0.0.1:{rest_port}/v1/models/__readiness_probe__", timeout=1.0)
    except httpx.HTTPError:
        return False
    return True


@contextlib.contextmanager
def running_model_server(
    model_root: Path,
    *,
    log_dir: Path,
    config_file: Path | None = None,
    poll_seconds: float = 0.5,
    env: dict[str, str] | None = None,
    wait_for: Sequence[str] = (),
    name: str = "modelserver",
    ports: tuple[int, int] | None = None,
) -> Iterator[ModelServerHandle]:
    """Run ``spotter modelserver`` on free ports (or on ``ports``) until the block ends.

    Args:
        model_root: the model repository (``<name>/<version>/saved_model.pb``).
        log_dir: where the server's output goes (``<log_dir>/<name>.log``).
        config_file: an optional TFS ``models.config``.
        poll_seconds: how often the server re-scans the repository.
        env: extra environment variables for the server.
        wait_for: models that must have an AVAILABLE version before the block starts.
        name: the log file's name.
        ports: ``(grpc_port, rest_port)`` to listen on, e.g. to bring a server back where a gateway expects it.
    """
    if ports is not None:
        grpc_port, rest_port = ports
    else:
        grpc_port, rest_port = free_port(), free_port()
        while rest_port == grpc_port:
            rest_port = free_port()
    args = [
        "modelserver",
        "--host",
        "127.0.0.1",
        "--model-root",
        str(model_root),
        "--grpc-port",
        str(grpc_port),
        "--rest-port",
        str(rest_port),
        "--poll-seconds",
        str(poll_seconds),
    ]
    if config_file is not None:
        args += ["--model-config-file", str(config_file)]
    full_env = {"TF_CPP_MIN_LOG_LEVEL": "2", "SPOTTER_LOG_JSON": "true", **(env or {})}
    server = start_server(
        name,
        spotter_command(*args),
        log_dir=log_dir,
        ready=lambda: _answers(rest_port, grpc_port),
        env=full_env,
        timeout=START_TIMEOUT,
    )
    handle = ModelServerHandle(server=server, grpc_port=grpc_port, rest_port=rest_port)
    try:
        for model in wait_for:
            handle.wait_available(model, timeout=START_TIMEOUT)
        yield handle
    finally:
        server.stop()
