"""The gateway's path: the model server (a real subprocess) talked to with Spotter's own stubs (``services.gen.tfs``),
in a process that never imports TensorFlow."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from services.gen.tfs import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    types_pb2,
)
from tests.support.modelserver import ModelServerHandle
from tests.support.session_models import TINY_SIZE, WARMUP_RECORDS
from tests.support.tiny_models import LABELS, expected_scores

pytestmark = pytest.mark.integration

SIZE = TINY_SIZE
WARM = "warm"


@pytest.fixture(scope="module")
def server(model_server: ModelServerHandle) -> ModelServerHandle:
    """The session's server: ``warm`` (a tiny detector with warmup records) and ``odapi`` (a TF1 export) among its
    models. Its fixture checks that SIGTERM stops it cleanly."""
    return model_server


@pytest.fixture(scope="module")
def channel(server: ModelServerHandle) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield channel


def uint8_tensor(array: np.ndarray, proto) -> None:
    proto.dtype = types_pb2.DT_UINT8
    proto.tensor_shape.dim.extend([proto.tensor_shape.Dim(size=s) for s in array.shape])
    proto.tensor_content = array.tobytes()


def test_predict_with_our_stubs(channel: grpc.Channel) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    images = np.random.default_rng(1).integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = WARM
    uint8_tensor(images, request.inputs["images"])
    response = stub.Predict(request, timeout=10)

    assert (response.model_spec.name, response.model_spec.version.value) == (WARM, 1)
    assert response.model_spec.signature_name == "serving_default"
    scores = response.outputs["detection_scores"]
    assert scores.dtype == types_pb2.DT_FLOAT
    assert [d.size for d in scores.tensor_shape.dim] == [4, 3]
    np.testing.assert_allclose(np.array(scores.float_val).reshape(4, 3), expected_scores(images), rtol=1e-5)


def test_labels_with_our_stubs(channel: grpc.Channel) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = WARM
    request.model_spec.signature_name = "labels"
    # The contract's labels take a batch (TFS's batching needs an input) and answer one row per element.
    request.inputs["batch"].dtype = types_pb2.DT_INT32
    request.inputs["batch"].tensor_shape.dim.add(size=1)
    request.inputs["batch"].int_val.append(0)
    response = stub.Predict(request, timeout=10)
    assert [d.size for d in response.outputs["ids"].tensor_shape.dim] == [1, 3]
    assert list(response.outputs["ids"].int_val) == [1, 2, 3]
    assert [n.decode() for n in response.outputs["names"].string_val] == list(LABELS)


def test_metadata_with_our_stubs(channel: grpc.Channel) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "odapi"
    response = stub.GetModelMetadata(request, timeout=10)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_map)
    inputs = signature_map.signature_def["serving_default"].inputs["inputs"]
    assert inputs.dtype == types_pb2.DT_UINT8
    assert [d.size for d in inputs.tensor_shape.dim] == [-1, -1, -1, 3]


def test_status_and_errors_with_our_stubs(channel: grpc.Channel) -> None:
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = WARM
    (status,) = stub.GetModelStatus(request, timeout=10).model_version_status
    assert (status.version, status.state) == (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)

    predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    bad = predict_pb2.PredictRequest()
    bad.model_spec.name = WARM
    uint8_tensor(np.zeros((1, SIZE, SIZE, 3), np.uint8), bad.inputs["images"])
    bad.inputs["images"].dtype = types_pb2.DT_INT32  # the runtime refuses the dtype, as TFS's runtime does
    bad.inputs["images"].tensor_content = np.zeros((1, SIZE, SIZE, 3), np.int32).tobytes()
    with pytest.raises(grpc.RpcError) as info:
        predictions.Predict(bad, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    bad.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as info:
        predictions.Predict(bad, timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_warmup_records_were_replayed(server: ModelServerHandle, tiny_models: Path) -> None:
    warmup_file = tiny_models / "root" / WARM / "1" / "assets.extra" / "tf_serving_warmup_requests"
    lines = [line for line in server.server.log().splitlines() if f"model at {warmup_file}." in line]
    assert any(f"Number of warmup records read: {WARMUP_RECORDS}." in line for line in lines), lines
