"""Overload and trouble: a full queue, a version that vanishes under a request, a model server that goes away."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.gateway.helpers import gateway_settings, running_gateway, solid
from tests.support.modelserver import ModelServerHandle, running_model_server

pytestmark = pytest.mark.integration


def post(url: str, model: str, body: bytes, query: str = "") -> httpx.Response:
    return httpx.post(
        f"{url}/v1/models/{model}:detect?{query}", content=body, headers={"Content-Type": "image/png"}, timeout=30
    )


def test_a_full_queue_is_503_with_retry_after_at_once(model_server: ModelServerHandle) -> None:
    # One tiled image needs more places than the queue has: refused, not queued (no Predict involved).
    settings = gateway_settings(model_server.grpc_target, max_queue_size=4, retry_after_seconds=3)
    with running_gateway(settings) as gateway:
        response = post(gateway.url, "tiny", solid(200, 200), "tile=on")
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "overloaded"
        assert response.headers["Retry-After"] == "3"
        assert gateway.app.state.batcher.pending == 0  # the views that got in left again
        assert post(gateway.url, "tiny", solid(16, 16)).status_code == 200


def test_a_version_that_vanished_is_retried_on_the_new_latest(tmp_path: Path, tiny_models: Path) -> None:
    root = tmp_path / "models"
    shutil.copytree(tiny_models / "root" / "fresh" / "1", root / "gone" / "1")
    shutil.copytree(tiny_models / "staging" / "fresh" / "2", tmp_path / "staging" / "2")
    with running_model_server(root, log_dir=tmp_path / "logs", wait_for=["gone"]) as server:
        shutil.copytree(tmp_path / "staging" / "2", root / "gone" / ".tmp-2")
        (root / "gone" / ".tmp-2").rename(root / "gone" / "2")
        server.wait_available("gone", 2)
        # A catalog that never refreshes by itself: only a miss makes it look again.
        settings = gateway_settings(server.grpc_target, catalog_refresh_seconds=3600)
        with running_gateway(settings) as gateway:
            assert post(gateway.url, "gone", solid(16, 16)).json()["version"] == 2
            shutil.rmtree(root / "gone" / "2")
            server.wait_state("gone", 2, "END")
            response = post(gateway.url, "gone", solid(16, 16))
            assert response.status_code == 200, response.text
            assert response.json()["version"] == 1
            pinned = post(gateway.url, "gone", solid(16, 16), "version=2")
            assert pinned.status_code == 404


def test_model_server_down_is_503_within_the_deadline_and_recovers(tmp_path: Path, tiny_models: Path) -> None:
    root = tmp_path / "models"
    shutil.copytree(tiny_models / "root" / "tiny" / "1", root / "tiny" / "1")
    logs = tmp_path / "logs"
    with running_model_server(root, log_dir=logs, wait_for=["tiny"]) as server:
        settings = gateway_settings(server.grpc_target, tfs_deadline_seconds=3, model_root=root)
        with running_gateway(settings) as gateway:
            assert post(gateway.url, "tiny", solid(16, 16)).status_code == 200
            assert httpx.get(f"{gateway.url}/readyz").status_code == 200
            server.server.stop()

            started = time.monotonic()
            response = post(gateway.url, "tiny", solid(16, 16))
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "unavailable"
            assert int(response.headers["Retry-After"]) >= 1
            assert time.monotonic() - started < 3 + 2  # within the deadline, never a hang
            ready = httpx.get(f"{gateway.url}/readyz", timeout=10)
            assert ready.status_code == 503
            assert "does not answer" in ready.json()["error"]["message"]
            listing = httpx.get(f"{gateway.url}/v1/models", timeout=10)
            assert listing.status_code in (200, 503)

            # The model server comes back on the same port: the same gateway serves again.
            ports = (server.grpc_port, server.rest_port)
            with running_model_server(root, log_dir=logs, ports=ports, name="modelserver-again"):
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and post(gateway.url, "tiny", solid(16, 16)).status_code != 200:
                    time.sleep(0.3)
                assert post(gateway.url, "tiny", solid(16, 16)).status_code == 200
                assert httpx.get(f"{gateway.url}/readyz", timeout=10).status_code == 200


def test_a_client_that_goes_away_frees_its_place_in_the_queue(model_server: ModelServerHandle) -> None:
    # Batches wait 20 s to fill (the fixed-delay dispatch): a request stays queued until its client leaves.
    settings = gateway_settings(
        model_server.grpc_target, max_batch_size=64, max_batch_delay_ms=20_000, batch_work_conserving=False
    )
    with running_gateway(settings) as gateway:
        body = solid(16, 16)
        port = int(gateway.url.rsplit(":", 1)[1])
        head = (
            f"POST /v1/models/tiny:detect HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        batcher = gateway.app.state.batcher
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(head + body)
            assert wait_for(lambda: batcher.pending == 1), "the request never reached the queue"
        assert wait_for(lambda: batcher.pending == 0, timeout=5), "the departed client's image is still queued"


def wait_for(condition, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())
