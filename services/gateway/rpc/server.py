"""The gateway's gRPC server (``grpc.aio``), run inside the FastAPI app's lifespan.

It lives on the app's event loop and serves from the objects the lifespan built (``app.state.dataplane``,
``app.state.catalog``), so gRPC and REST requests share the batcher and its batches. Beside ``spotter.v1`` it serves
``grpc.health.v1`` (see :mod:`services.gateway.rpc.health`) and server reflection (``grpcurl list`` works). On
shutdown, health turns NOT_SERVING, new calls are refused and calls in flight get ``grpc_grace_seconds`` to finish
before they are cancelled; the batcher closes only after that (the app's lifespan closes it later).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
from fastapi import FastAPI
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.gateway.config import GatewaySettings
from services.gateway.rpc.health import HealthReporter
from services.gateway.rpc.interceptors import SERVICE, ServiceInterceptor
from services.gateway.rpc.service import DetectionServicer
from services.gen.spotter.v1 import detection_pb2_grpc

logger = logging.getLogger(__name__)

_KEEPALIVE = [
    # Ping idle connections so that a client that vanished without closing its connection is noticed (its calls
    # are cancelled and leave the batch queue) within a couple of minutes.
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
]


def server_options(settings: GatewaySettings) -> list[tuple[str, int]]:
    """The server's channel arguments: message size limits, keepalive, and no silently shared port."""
    return [
        ("grpc.max_receive_message_length", settings.grpc_max_message_bytes),
        ("grpc.max_send_message_length", settings.grpc_max_message_bytes),
        # gRPC sets SO_REUSEPORT by default: a second gateway on the same port would share it without an error.
        # Only the processes of one gateway (SPOTTER_GATEWAY_WORKERS > 1, services.gateway.workers) share it.
        ("grpc.so_reuseport", 1 if settings.gateway_workers > 1 else 0),
        *_KEEPALIVE,
    ]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Serve the gRPC API while the block runs; the bound port is put on ``app.state.grpc_port``.

    Raises:
        RuntimeError: the port cannot be bound.
    """
    settings: GatewaySettings = app.state.settings
    server = grpc.aio.server(interceptors=[ServiceInterceptor(settings)], options=server_options(settings))
    servicer = DetectionServicer(app.state.dataplane, settings)
    detection_pb2_grpc.add_DetectionServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    reporter = HealthReporter(
        app.state.catalog,
        [SERVICE],
        check_seconds=min(max(settings.catalog_refresh_seconds / 4, 0.05), 1.0),
    )
    health_pb2_grpc.add_HealthServicer_to_server(reporter.servicer, server)
    reflection.enable_server_reflection([SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    address = f"{settings.grpc_host}:{settings.grpc_port}"
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as err:
        raise RuntimeError(f"the gRPC API cannot listen on {address}: {err}") from err
    await reporter.start()
    await server.start()
    app.state.grpc_port = port
    logger.info("gRPC API listening on %s:%d", settings.grpc_host, port)
    try:
        yield
    finally:
        await reporter.stop()
        await server.stop(settings.grpc_grace_seconds)
        logger.info("gRPC API stopped")
