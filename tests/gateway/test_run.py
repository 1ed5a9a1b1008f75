"""``spotter run``: starts the model server and the gateway, serves, and stops everything it started."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from tests.gateway.helpers import solid
from tests.support.processes import free_port, port_open, spotter_command

pytestmark = pytest.mark.integration


def ports() -> dict[str, int]:
    chosen: set[int] = set()
    names = ("SPOTTER_HTTP_PORT", "SPOTTER_GRPC_PORT", "SPOTTER_MODELSERVER_GRPC_PORT", "SPOTTER_MODELSERVER_REST_PORT")
    result = {}
    for name in names:
        port = free_port()
        while port in chosen:
            port = free_port()
        chosen.add(port)
        result[name] = port
    return result


@pytest.fixture
def run_env(tmp_path: Path, tiny_models: Path, redis_url: str) -> Iterator[tuple[dict[str, str], dict[str, int]]]:
    root = tmp_path / "models"
    shutil.copytree(tiny_models / "root" / "tiny" / "1", root / "tiny" / "1")
    chosen = ports()
    env = {
        **os.environ,
        **{k: str(v) for k, v in chosen.items()},
        "SPOTTER_MODEL_ROOT": str(root),
        "SPOTTER_REDIS_URL": redis_url,
        "SPOTTER_DATA_DIR": str(tmp_path / "data"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    yield env, chosen


def wait(condition, timeout: float = 180) -> bool:  # type: ignore[no-untyped-def]
    return bool(
        Retrying(
            retry=retry_if_result(lambda ok: not ok),
            stop=stop_after_delay(timeout),
            wait=wait_fixed(0.3),
            retry_error_callback=lambda _: False,
        )(condition)
    )


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_run_serves_and_ctrl_c_stops_everything(run_env: tuple[dict[str, str], dict[str, int]], tmp_path: Path) -> None:
    env, chosen = run_env
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(spotter_command("run"), env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{chosen['SPOTTER_HTTP_PORT']}"
    try:
        assert wait(lambda: ready(url) or proc.poll() is not None), log.read_text()[-4000:]
        assert proc.poll() is None, log.read_text()[-4000:]
        response = httpx.post(
            f"{url}/v1/models/tiny:detect", content=solid(16, 16), headers={"Content-Type": "image/png"}, timeout=30
        )
        assert response.status_code == 200, response.text
        # The banner follows the supervisor's own readiness poll, a moment after the gateway answers.
        assert wait(lambda: f"{url}/docs" in log.read_text()), log.read_text()[-4000:]
        printed = log.read_text()
        assert str(chosen["SPOTTER_MODELSERVER_GRPC_PORT"]) in printed
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
    assert code == 0, log.read_text()[-4000:]
    for port in chosen.values():
        assert not port_open(port), f"port {port} still open after spotter run stopped"


def test_run_stops_the_others_when_one_dies(run_env: tuple[dict[str, str], dict[str, int]], tmp_path: Path) -> None:
    env, chosen = run_env
    # The gateway's port is taken: the gateway exits at once, and spotter run must stop the model server too.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("0.0.0.0", chosen["SPOTTER_HTTP_PORT"]))
        blocker.listen(1)
        log = tmp_path / "run.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(spotter_command("run"), env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            code = proc.wait(180)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert code != 0, log.read_text()[-4000:]
    assert "gateway exited with code" in log.read_text()
    assert not port_open(chosen["SPOTTER_MODELSERVER_GRPC_PORT"])
