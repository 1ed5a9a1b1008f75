"""The TFS client over a real gRPC channel: its errors become ours (original kept), deadlines hold, ids travel.

The server here is a small in-process stand-in that answers with chosen status codes: the client's mapping is what is
under test, not a model (the real model server is exercised by the integration tests).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import numpy as np
import pytest

from services import errors
from services.gateway.tensors import to_ndarray, to_tensor_proto
from services.gateway.tfs import TfsClient
from services.gen.tfs import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    meta_graph_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from services.logs import request_id_var
from tests.support.processes import free_port

pytestmark = pytest.mark.anyio


class StandIn(prediction_service_pb2_grpc.PredictionServiceServicer, model_service_pb2_grpc.ModelServiceServicer):
    """Model ``code-<NAME>`` aborts with that status; ``slow`` never answers in time; ``echo`` doubles ``x``."""

    def __init__(self) -> None:
        self.status_calls = 0
        self.request_ids: list[str] = []

    async def _abort_if_asked(self, name: str, context: grpc.aio.ServicerContext) -> None:
        self.request_ids.extend(v for k, v in context.invocation_metadata() if k == "x-request-id")
        if name.startswith("code-"):
            code = grpc.StatusCode[name.removeprefix("code-")]
            await context.abort(code, f"stand-in says {code.name}")
        if name == "slow":
            await asyncio.sleep(5)

    async def Predict(self, request, context):
        await self._abort_if_asked(request.model_spec.name, context)
        x = to_ndarray(request.inputs["x"])
        response = predict_pb2.PredictResponse()
        response.outputs["y"].CopyFrom(to_tensor_proto(x * 2))
        return response

    async def GetModelMetadata(self, request, context):
        await self._abort_if_asked(request.model_spec.name, context)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        signatures.signature_def["serving_default"].CopyFrom(meta_graph_pb2.SignatureDef(method_name="predict"))
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = 7
        response.metadata["signature_def"].Pack(signatures)
        return response

    async def GetModelStatus(self, request, context):
        self.status_calls += 1
        await self._abort_if_asked(request.model_spec.name, context)
        return get_model_status_pb2.GetModelStatusResponse(
            model_version_status=[get_model_status_pb2.ModelVersionStatus(version=7, state=30)]
        )


@pytest.fixture
async def stand_in() -> AsyncIterator[tuple[StandIn, str]]:
    server = grpc.aio.server()
    servicer = StandIn()
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield servicer, f"127.0.0.1:{port}"
    await server.stop(None)


def client(target: str, deadline: float = 2.0) -> TfsClient:
    return TfsClient(target, deadline=deadline, max_message_bytes=8 * 1024 * 1024, retry_after=3.0)


async def test_calls_answer_and_carry_the_request_id(stand_in: tuple[StandIn, str]) -> None:
    servicer, target = stand_in
    tfs = client(target)
    token = request_id_var.set("req-42")
    try:
        out = await tfs.predict("echo", {"x": np.arange(3, dtype=np.float32)}, version=7)
        meta = await tfs.model_metadata("echo")
        status = await tfs.model_status("echo")
    finally:
        request_id_var.reset(token)
        await tfs.close()
    np.testing.assert_array_equal(out["y"], [0, 2, 4])
    assert meta.version == 7 and "serving_default" in meta.signatures
    assert [(s.version, s.state) for s in status] == [(7, 30)]
    assert servicer.request_ids == ["req-42"] * 3


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("NOT_FOUND", errors.ModelNotFound),
        ("UNAVAILABLE", errors.Unavailable),
        ("RESOURCE_EXHAUSTED", errors.Overloaded),
        ("INVALID_ARGUMENT", errors.InvalidParameter),
        ("INTERNAL", errors.UpstreamError),
        ("FAILED_PRECONDITION", errors.UpstreamError),
    ],
)
async def test_status_codes_become_our_errors(stand_in: tuple[StandIn, str], code: str, error: type) -> None:
    _, target = stand_in
    tfs = client(target)
    try:
        with pytest.raises(error) as raised:
            await tfs.predict(f"code-{code}", {"x": np.zeros(1, np.float32)})
    finally:
        await tfs.close()
    assert isinstance(raised.value.__cause__, grpc.aio.AioRpcError)
    assert raised.value.__cause__.code() == grpc.StatusCode[code]
    if code == "INVALID_ARGUMENT":
        assert "stand-in says INVALID_ARGUMENT" in raised.value.message  # TFS's own message reaches the client
    if error in (errors.Unavailable, errors.Overloaded):
        assert raised.value.retry_after == 3.0


async def test_status_and_metadata_are_retried_on_unavailable_but_predict_is_not(
    stand_in: tuple[StandIn, str],
) -> None:
    servicer, target = stand_in
    tfs = client(target)
    try:
        with pytest.raises(errors.Unavailable):
            await tfs.model_status("code-UNAVAILABLE")
    finally:
        await tfs.close()
    assert servicer.status_calls == 3  # the service config's retryPolicy, not a loop of ours


async def test_a_slow_server_is_a_deadline_error(stand_in: tuple[StandIn, str]) -> None:
    _, target = stand_in
    tfs = client(target, deadline=0.2)
    try:
        with pytest.raises(errors.DeadlineExceeded):
            await asyncio.wait_for(tfs.predict("slow", {"x": np.zeros(1, np.float32)}), 3)
    finally:
        await tfs.close()


async def test_no_server_is_unavailable_within_the_deadline() -> None:
    tfs = client(f"127.0.0.1:{free_port()}", deadline=2.0)
    try:
        with pytest.raises(errors.Unavailable):
            await asyncio.wait_for(tfs.predict("demo", {"x": np.zeros(1, np.float32)}), 3)
        with pytest.raises(errors.Unavailable):
            await asyncio.wait_for(tfs.model_status("demo"), 3)
    finally:
        await tfs.close()
