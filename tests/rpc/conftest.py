"""Fixtures for the gRPC API tests: one gateway serving REST and gRPC side by side over the session's model server
(``model_server`` in ``tests/conftest.py``, shared by every test package), a client and a plain channel to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from services.client.rpc import DetectionClient
from tests.gateway.helpers import RunningGateway, running_gateway
from tests.rpc.helpers import grpc_target, rpc_settings
from tests.support.modelserver import ModelServerHandle


@pytest.fixture(scope="session")
def gateway(model_server: ModelServerHandle, tiny_models: Path) -> Iterator[RunningGateway]:
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
