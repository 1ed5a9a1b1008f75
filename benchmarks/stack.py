"""The servers a bench run measures: one embedded model server and gateways in front of it, each a real child
process on free ports (``services.processes``, the same helpers the tests use)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from services.gateway.config import GatewaySettings
from services.modelserver.launch import ModelServerHandle, running_model_server
from services.processes import ServerProcess, free_port, spotter_command, start_server

GATEWAY_START_TIMEOUT = 60.0
BATCHING_SETTINGS = ("max_batch_size", "max_batch_delay_ms", "max_inflight_batches", "max_queue_size", "batch_adaptive")
"""The gateway settings a bench row reports (their ``SPOTTER_*`` variables are set explicitly for each gateway)."""


@dataclass
class Gateway:
    """A running ``spotter gateway``: its process, URL, and the batching settings it was given."""

    server: ServerProcess
    url: str
    grpc_target: str
    settings: dict[str, str]

    @property
    def metrics_url(self) -> str:
        return f"{self.url}/metrics"


def batching_defaults() -> dict[str, str]:
    """The gateway's default batching settings (read from its settings class, so they never go stale here)."""
    fields = GatewaySettings.model_fields
    return {name: str(fields[name].default) for name in BATCHING_SETTINGS}


@contextlib.contextmanager
def model_server(
    version_dir: Path, work: Path, env: Mapping[str, str] | None = None
) -> Iterator[tuple[ModelServerHandle, str]]:
    """Serve exactly ``version_dir`` (through a private model root of symlinks, so that a version published while
    the bench runs is not picked up), with ``env`` added to its environment; yields the server and the model's
    name."""
    name = version_dir.parent.name
    root = work / "models"
    (root / name).mkdir(parents=True, exist_ok=True)
    link = root / name / version_dir.name
    if not link.exists():
        link.symlink_to(version_dir.resolve(), target_is_directory=True)
    with running_model_server(
        root, log_dir=work / "logs", poll_seconds=5.0, wait_for=[name], env=dict(env or {})
    ) as handle:
        yield handle, name


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def gateway(name: str, tfs_grpc: str, work: Path, settings: Mapping[str, str]) -> Iterator[Gateway]:
    """Run ``spotter gateway`` on free ports against ``tfs_grpc``, with ``settings`` (field name -> value) as
    ``SPOTTER_*`` variables, until the block ends; ready once ``/readyz`` answers 200."""
    port, grpc_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    env = {f"SPOTTER_{key.upper()}": value for key, value in settings.items()}
    env.update(
        SPOTTER_TFS_GRPC=tfs_grpc,
        SPOTTER_GRPC_PORT=str(grpc_port),  # its gRPC API (when present) must not clash with the other gateway's
        SPOTTER_LOG_JSON="true",
    )
    server = start_server(
        name,
        spotter_command("gateway", "--host", "127.0.0.1", "--port", str(port)),
        log_dir=work / "logs",
        ready=lambda: _ready(url),
        env=env,
        timeout=GATEWAY_START_TIMEOUT,
    )
    try:
        yield Gateway(server, url, f"127.0.0.1:{grpc_port}", dict(settings))
    finally:
        server.stop()
