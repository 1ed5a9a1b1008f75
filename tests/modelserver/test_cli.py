"""``spotter modelserver`` as a process: flags, clean shutdown on SIGTERM/SIGINT, clear start-up errors."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support.modelserver import running_model_server
from tests.support.processes import free_port, spotter_command

pytestmark = pytest.mark.integration


def test_ctrl_c_stops_it_cleanly(tmp_path: Path) -> None:
    # SIGTERM is what running_model_server stops it with: test_our_stubs checks that exit too.
    with running_model_server(tmp_path / "empty", log_dir=tmp_path) as server:
        assert server.status("anything") == []
        server.server.proc.send_signal(signal.SIGINT)
        assert server.server.proc.wait(30) == 0
    log = server.server.log()
    assert "Model server stopped" in log
    assert "Traceback" not in log


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        spotter_command("modelserver", *args),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_a_bad_config_file_stops_it_at_start_up(tmp_path: Path) -> None:
    config = tmp_path / "models.config"
    config.write_text('model_config_list { config { name: "m" base_path: "/m" model_platform: "onnx" } }')
    result = run("--model-config-file", str(config), "--grpc-port", str(free_port()), "--rest-port", str(free_port()))
    assert result.returncode == 1
    assert "Model m requests unsupported platform onnx" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run(
            "--model-root",
            str(tmp_path),
            "--host",
            "127.0.0.1",
            "--grpc-port",
            str(free_port()),
            "--rest-port",
            str(port),
        )
    assert result.returncode == 1
    assert "could not start" in result.stderr


def test_invalid_settings(tmp_path: Path) -> None:
    result = run("--model-root", str(tmp_path), env={"SPOTTER_MODELSERVER_POLL_SECONDS": "-1"})
    assert result.returncode == 2
    assert "modelserver_poll_seconds" in result.stderr
