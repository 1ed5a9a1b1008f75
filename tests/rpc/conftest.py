"""Fixtures for the gRPC API tests: the session's model server over the tiny models and the demo model (shared
with the gateway tests' fixtures), and one gateway serving REST and gRPC side by side over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from services.client.rpc import DetectionClient
from tests.gateway.conftest import model_server, tiny_models  # noqa: F401 (fixtures shared with the gateway tests)
from tests.gateway.helpers import RunningGateway, running_gateway
from tests.rpc.helpers import grpc_target, rpc_settings
from tests.support.modelserver import ModelServerHandle


@pytest.fixture(scope="session")
def gateway(model_server: ModelServerHandle, tiny_models: Path) -> Iterator[RunningGateway]:  # noqa: F811
    with running_gateway(rpc_settings(model_server, tiny_models)) as running:
        yield running


@pytest.fixture(scope="session")
def client(gateway: RunningGateway) -> Iterator[DetectionClient]:
    with DetectionClient(grpc_target(gateway), timeout=60) as rpc:
        yield rpc


@pytest.fixture(scope="session")
def channel(gateway: RunningGateway) -> Iterator[grpc.Channel]:
    """A plain channel, for the raw stubs (metadata, health, reflection)."""
    with grpc.insecure_channel(grpc_target(gateway)) as plain:
        yield plain
