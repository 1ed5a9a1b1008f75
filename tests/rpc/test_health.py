"""``grpc.health.v1`` follows the model server: NOT_SERVING while it is unreachable or has no model available,
SERVING when it is back, overall and for the service, by ``Check`` and by ``Watch``."""

from __future__ import annotations

import shutil
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.gateway.rpc.interceptors import SERVICE
from tests.gateway.helpers import gateway_settings, running_gateway
from tests.rpc.helpers import grpc_target, wait_for
from tests.support.modelserver import running_model_server
from tests.support.processes import free_port

pytestmark = pytest.mark.integration

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def test_health_follows_the_model_server_and_its_models(tmp_path: Path, tiny_models: Path) -> None:
    root = tmp_path / "models"
    shutil.copytree(tiny_models / "root" / "tiny" / "1", root / "tiny" / "1")
    grpc_port, rest_port = free_port(), free_port()
    while rest_port == grpc_port:
        rest_port = free_port()
    settings = gateway_settings(
        f"127.0.0.1:{grpc_port}", model_root=root, grpc_host="127.0.0.1", tfs_deadline_seconds=2
    )
    with running_gateway(settings) as gateway, grpc.insecure_channel(grpc_target(gateway)) as channel:
        health = health_pb2_grpc.HealthStub(channel)

        def status(service: str = "") -> int:
            return health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status

        def becomes(wanted: int, timeout: float = 60) -> bool:
            return wait_for(lambda: status() == wanted and status(SERVICE) == wanted, timeout)

        watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE), timeout=300)
        assert status() == NOT_SERVING and status(SERVICE) == NOT_SERVING  # no model server yet
        with pytest.raises(grpc.RpcError) as unknown:
            status("no.such.Service")
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]

        ports = (grpc_port, rest_port)
        with running_model_server(root, log_dir=tmp_path / "logs", ports=ports, name="modelserver-health") as ms:
            server = ms.server
            assert becomes(SERVING), f"never SERVING:\n{server.log()[-3000:]}"
            # The only model's version goes away: nothing to serve, though the server answers.
            (root / "tiny" / "1").rename(root / "tiny" / ".away-1")
            assert becomes(NOT_SERVING), f"still SERVING without a model:\n{server.log()[-3000:]}"
            (root / "tiny" / ".away-1").rename(root / "tiny" / "1")
            assert becomes(SERVING), f"not SERVING once the model is back:\n{server.log()[-3000:]}"
        assert becomes(NOT_SERVING), "still SERVING with the model server stopped"

        seen = [next(watch).status for _ in range(5)]
        watch.cancel()
        assert seen == [NOT_SERVING, SERVING, NOT_SERVING, SERVING, NOT_SERVING]
