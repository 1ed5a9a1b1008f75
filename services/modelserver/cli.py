"""``spotter modelserver``: the embedded TensorFlow Serving stand-in (TensorFlow is imported when it runs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer


def register(app: typer.Typer) -> None:
    """Add the ``modelserver`` command to the ``spotter`` CLI."""
    app.command("modelserver")(modelserver)


def modelserver(
    model_root: Annotated[Path | None, typer.Option(help="Model repository: <name>/<version>/saved_model.pb.")] = None,
    model_config_file: Annotated[
        Path | None, typer.Option(help="TFS models.config (model_config_list); overrides discovery.")
    ] = None,
    grpc_port: Annotated[int | None, typer.Option(help="gRPC port (TFS: 8500).")] = None,
    rest_port: Annotated[int | None, typer.Option(help="REST port (TFS: 8501).")] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    poll_seconds: Annotated[float | None, typer.Option(help="Seconds between scans of the model folders.")] = None,
    enable_batching: Annotated[
        bool | None, typer.Option("--enable-batching", help="Batch concurrent requests (TFS: --enable_batching).")
    ] = None,
    batching_parameters_file: Annotated[
        Path | None, typer.Option(help="TFS BatchingParameters text proto (TFS: --batching_parameters_file).")
    ] = None,
    model_config_file_poll_wait_seconds: Annotated[
        float | None, typer.Option(help="Seconds between re-reads of --model-config-file (0: read once).")
    ] = None,
) -> None:
    """Serve the model repository over TensorFlow Serving's gRPC and REST APIs (flags override SPOTTER_* settings)."""
    from pydantic import ValidationError

    from services.logs import configure_logging
    from services.modelserver.config import ConfigError, ModelServerSettings, model_sources

    overrides: dict[str, Any] = {
        "model_root": model_root,
        "model_config_file": model_config_file,
        "modelserver_grpc_port": grpc_port,
        "modelserver_rest_port": rest_port,
        "modelserver_host": host,
        "modelserver_poll_seconds": poll_seconds,
        "model_config_file_poll_wait_seconds": model_config_file_poll_wait_seconds,
        "modelserver_enable_batching": enable_batching,
        "modelserver_batching_parameters_file": batching_parameters_file,
    }
    try:
        settings = ModelServerSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        typer.echo(f"invalid settings: {exc}", err=True)
        raise typer.Exit(2) from exc
    configure_logging(settings.log_level, json=settings.log_json)
    try:
        # The config is checked before TensorFlow is imported: a bad file fails in a second, not after the import.
        sources = model_sources(settings)
        if settings.modelserver_enable_batching:
            from services.modelserver.batching import read_batching_parameters

            read_batching_parameters(settings.modelserver_batching_parameters_file)
        # TensorFlow's C++ INFO chatter (CPU features, CUDA probing) is noise in a server's log; warnings stay.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
        from services.modelserver.server import serve

        serve(settings, sources)
    except (ConfigError, OSError) as exc:
        typer.echo(f"spotter modelserver: {exc}", err=True)
        raise typer.Exit(1) from exc
