"""``spotter gateway``: serve the REST API (uvicorn, logging configured once by Spotter)."""

from __future__ import annotations

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
    from services.logs import configure_logging

    settings = GatewaySettings()
    if host is not None:
        settings.http_host = host
    if port is not None:
        settings.http_port = port
    configure_logging(settings.log_level, json=settings.log_json)
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        timeout_graceful_shutdown=10,
    )


def register(app: typer.Typer) -> None:
    app.command()(gateway)
