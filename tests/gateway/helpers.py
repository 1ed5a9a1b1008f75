"""Run the gateway for a test: the real app under uvicorn in a thread, on a free port (real HTTP, real concurrency).

with running_gateway(settings) as gateway:
    httpx.post(f"{gateway.url}/v1/models/demo:detect", ...)
    gateway.app.state.batcher  # the live objects, for assertions
"""

from __future__ import annotations

import contextlib
import io
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import uvicorn
from fastapi import FastAPI
from PIL import Image
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from services.gateway.app import create_app
from services.gateway.config import GatewaySettings
from services.gateway.httpserver import server_config
from tests.support.processes import free_port


@dataclass
class RunningGateway:
    url: str
    app: FastAPI
    server: uvicorn.Server


@contextlib.contextmanager
def running_gateway(settings: GatewaySettings) -> Iterator[RunningGateway]:
    """Serve ``create_app(settings)`` on 127.0.0.1 (the lifespan runs) until the block ends."""
    port = free_port()
    app = create_app(settings)
    # The gateway's own uvicorn configuration (its HTTP protocol and timeouts), on a free port.
    server = uvicorn.Server(server_config(app, settings, host="127.0.0.1", port=port, timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, name=f"gateway-{port}", daemon=True)
    thread.start()
    started = Retrying(
        retry=retry_if_result(lambda ok: not ok),
        stop=stop_after_delay(30),
        wait=wait_fixed(0.05),
        retry_error_callback=lambda _: False,
    )(lambda: server.started or not thread.is_alive())
    if not (started and server.started):
        server.should_exit = True
        thread.join(10)
        raise RuntimeError("the gateway did not start within 30s (its log is in the test output)")
    try:
        yield RunningGateway(f"http://127.0.0.1:{port}", app, server)
    finally:
        server.should_exit = True
        thread.join(15)


def gateway_settings(tfs_grpc: str, **overrides: object) -> GatewaySettings:
    """Test settings: no .env, the given model server, quick catalog refresh, gRPC API (when present) on a free port
    (``grpc_port=0``: several gateways run side by side in one test session)."""
    options: dict[str, object] = {"catalog_refresh_seconds": 0.5, "tfs_deadline_seconds": 5.0, "grpc_port": 0}
    # Fixed batch limits: tests of batching count exact batches. Adaptive sizing (the gateway's default) is tested
    # on its own (test_batchsizer.py, a simulated upstream) and end to end by the bench's smoke test.
    options["batch_adaptive"] = False
    options.update(overrides)
    return GatewaySettings(_env_file=None, tfs_grpc=tfs_grpc, **options)  # type: ignore[arg-type]


def encode(array: np.ndarray, fmt: str = "PNG", **params: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **params)
    return buffer.getvalue()


def solid(width: int, height: int, value: int = 255, fmt: str = "PNG") -> bytes:
    """A one-colour image (the tiny test detector's scores follow the mean pixel)."""
    return encode(np.full((height, width, 3), value, np.uint8), fmt)


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A few hundred bytes of PNG whose header declares ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
