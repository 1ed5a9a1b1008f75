"""The gRPC server in the gateway's lifespan: reflection, a port that is taken, and a graceful stop."""

from __future__ import annotations

import socket
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services import errors
from services.client.rpc import DetectionClient, detect_request
from services.gen.spotter.v1 import detection_pb2_grpc
from tests.gateway.helpers import running_gateway, solid
from tests.rpc.helpers import grpc_target, rpc_settings, wait_for
from tests.support.modelserver import ModelServerHandle

pytestmark = pytest.mark.integration


def test_reflection_lists_and_describes_the_service(channel: grpc.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    asks = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="spotter.v1.DetectionService"),
    ]
    listing, described = list(stub.ServerReflectionInfo(iter(asks), timeout=10))
    names = {s.name for s in listing.list_services_response.service}
    assert {"spotter.v1.DetectionService", "grpc.health.v1.Health"} <= names
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in described.file_descriptor_response.file_descriptor_proto
    ]
    [detection] = [f for f in files if f.name == "spotter/v1/detection.proto"]
    [service] = detection.service
    assert [m.name for m in service.method] == [
        "Detect",
        "DetectStream",
        "Annotate",
        "Classify",
        "ListModels",
        "GetModel",
    ]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # uvicorn's exit on failure
def test_a_taken_port_fails_the_start_loudly(model_server: ModelServerHandle, tiny_models: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = rpc_settings(model_server, tiny_models, grpc_port=port)
        with pytest.raises(RuntimeError, match="did not start"), running_gateway(settings):
            pass


def test_calls_in_flight_finish_when_the_gateway_stops(model_server: ModelServerHandle, tiny_models: Path) -> None:
    # The batch waits 1.5 s to fill (the fixed-delay dispatch): the call is still queued when the stop begins.
    settings = rpc_settings(
        model_server, tiny_models, max_batch_delay_ms=1_500, batch_work_conserving=False, grpc_grace_seconds=20
    )
    with (
        running_gateway(settings) as gateway,
        DetectionClient(grpc_target(gateway)) as client,
        grpc.insecure_channel(grpc_target(gateway)) as channel,
    ):
        stub = detection_pb2_grpc.DetectionServiceStub(channel)  # type: ignore[no-untyped-call]
        in_flight = stub.Detect.future(detect_request(solid(8, 8), model="tiny"), timeout=60)
        assert wait_for(lambda: gateway.app.state.batcher.pending == 1)
        gateway.server.should_exit = True
        assert in_flight.result(timeout=30).version == 1
        # New calls are refused once the server has stopped.
        assert wait_for(lambda: _refused(client), timeout=30)


def _refused(client: DetectionClient) -> bool:
    try:
        client.detect(solid(8, 8), model="tiny", timeout=2)
    except errors.Unavailable:
        return True
    except errors.SpotterError:
        return False
    return False
