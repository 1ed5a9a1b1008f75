"""``spotter gateway``: serve the REST API (uvicorn, logging configured once by Spotter)."""

from __future__ import annotations

import contextlib
from typing import Annotated

import typer


def gateway(
    host: Annotated[
        str | None, typer.Option(help="address to listen on [default: SPOTTER_HTTP_HOST or 0.0.0.0]")
    ] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port [default: SPOTTER_HTTP_PORT or 8080]")] = None,
) -> None:
    """Run the gateway: REST API, batching, and the model server behind it (SPOTTER_TFS_GRPC)."""
    import uvicorn

    from services.gateway.app import create_app
    from services.gateway.config import GatewaySettings
    from services.gateway.httpserver import server_config
    from services.gateway.runtime import tune_process
    from services.logs import configure_logging

    settings = GatewaySettings()
    if host is not None:
        settings.http_host = host
    if port is not None:
        settings.http_port = port
    configure_logging(settings.log_level, json=settings.log_json)
    if settings.gateway_workers > 1:  # N processes on the same ports (services/gateway/workers.py)
        from services.gateway.workers import supervise

        raise typer.Exit(supervise(settings))
    server = uvicorn.Server(server_config(create_app(settings), settings))
    tune_process()  # malloc thresholds, gc.freeze (services/gateway/runtime.py)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the Ctrl-C it stopped on, once stopped
        server.run()
    if not server.started:  # the lifespan or the socket failed (uvicorn.run's exit code for it)
        raise typer.Exit(3)


def register(app: typer.Typer) -> None:
    app.command()(gateway)
