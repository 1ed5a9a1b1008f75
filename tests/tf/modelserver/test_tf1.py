"""TF1 graph-mode SavedModels load and serve as TFS serves them: restored by their saver, assets fed to the init op,
signatures run by tensor name, inputs checked by the runtime (not against the signature's static shapes)."""

from __future__ import annotations

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import any_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tests.support.modelserver import ModelServerHandle
from tests.tf.modelserver.conftest import TF1_MODELS
from tests.tf.modelserver.tf1_models import ASSET_TEXT

Stub = prediction_service_pb2_grpc.PredictionServiceStub


@pytest.fixture(scope="module")
def stub(tf1_channel: grpc.Channel) -> Stub:
    return Stub(tf1_channel)


def predict(stub: Stub, model: str, signature: str = "", **inputs: np.ndarray) -> dict[str, np.ndarray]:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    for alias, array in inputs.items():
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(array))
    response = stub.Predict(request, timeout=30)
    return {alias: tf.make_ndarray(proto) for alias, proto in response.outputs.items()}


def error_of(stub: Stub, model: str, signature: str = "", **inputs: np.ndarray) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        predict(stub, model, signature, **inputs)
    return info.value


@pytest.mark.integration
def test_every_tf1_export_is_available(tf1_server: ModelServerHandle) -> None:
    for model in TF1_MODELS:
        (status,) = tf1_server.status(model)
        assert (status["state"], status["status"]["error_code"]) == ("AVAILABLE", "OK"), status


@pytest.mark.integration
def test_metadata_is_the_serve_meta_graph_s_with_its_unknown_dims(stub: Stub) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "half_plus_two"
    packed: any_pb2.Any = stub.GetModelMetadata(request, timeout=10).metadata["signature_def"]
    signatures = get_model_metadata_pb2.SignatureDefMap()
    packed.Unpack(signatures)
    x = signatures.signature_def["serving_default"].inputs["x"]
    assert [d.size for d in x.tensor_shape.dim] == [-1, 1]
    assert signatures.signature_def["tensorflow/serving/regress"].method_name == "tensorflow/serving/regress"
    # The ["serve", "gpu"] and ["train"] meta graphs (which have no signatures) are not the one served.
    assert "regress_x2_to_y3" in signatures.signature_def


@pytest.mark.integration
@pytest.mark.parametrize(("model", "offset"), [("half_plus_two", 2.0), ("half_plus_three", 3.0)])
def test_a_vector_against_a_minus_one_by_one_signature_runs_as_on_tfs(stub: Stub, model: str, offset: float) -> None:
    x = np.array([1.0, 2.0, 5.0], np.float32)  # shape [3] against the signature's [-1, 1]: the runtime takes it
    outputs = predict(stub, model, x=x)
    np.testing.assert_allclose(outputs["y"], 0.5 * x + offset)
    batched = predict(stub, model, x=x[:, None])["y"]
    assert batched.shape == (3, 1)


@pytest.mark.integration
@pytest.mark.parametrize("model", ["half_plus_two", "half_plus_three"])
def test_assets_are_fed_to_the_init_op(stub: Stub, model: str) -> None:
    # The asset's original file was deleted after export: only the SavedModel's assets/ copy, fed as TFS feeds it
    # (main_op for one model, TF 1.x's legacy_init_op and saved_model_assets collection for the other), has it.
    text = predict(stub, model, "vocabulary", x=np.zeros((1, 1), np.float32))["text"]
    assert text.item() == ASSET_TEXT.encode()


@pytest.mark.integration
def test_variables_of_every_rank_are_restored_by_the_saver(stub: Stub) -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    matrix = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
    # scalar 1 + cube of eight ones + tesseract of four quarters.
    expected = x @ matrix * np.array([1.0, 2.0], np.float32) + (1.0 + 8.0 + 1.0)
    np.testing.assert_allclose(predict(stub, "ranks", x=x)["y"], expected)


@pytest.mark.integration
def test_an_input_of_unknown_shape_takes_any_rank(stub: Stub) -> None:
    for shape in [(), (4,), (2, 3, 2)]:
        value = np.random.default_rng(len(shape)).normal(size=shape).astype(np.float32)
        np.testing.assert_allclose(predict(stub, "ranks", "double", any=value)["doubled"], value * 2)


@pytest.mark.integration
def test_the_runtime_decides_a_bad_shape_with_its_own_words(stub: Stub, tf1_server: ModelServerHandle) -> None:
    error = error_of(stub, "ranks", x=np.ones((2, 4), np.float32))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Matrix size-incompatible: In[0]: [2,4], In[1]: [3,2]" in error.details()
    response = httpx.post(f"{tf1_server.rest_url}/v1/models/ranks:predict", json={"instances": [[1, 2, 3, 4]]})
    assert response.status_code == 400
    assert "Matrix size-incompatible" in response.json()["error"]


@pytest.mark.integration
def test_a_wrong_dtype_is_the_runtime_s_invalid_argument(stub: Stub) -> None:
    error = error_of(stub, "half_plus_two", x=np.ones((1, 1), np.int32))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "int32" in error.details() and "float" in error.details()


@pytest.mark.integration
def test_rest_predict_on_a_tf1_export(tf1_server: ModelServerHandle) -> None:
    response = httpx.post(
        f"{tf1_server.rest_url}/v1/models/half_plus_two:predict", json={"inputs": {"x": [[1.0], [3.0]]}}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"outputs": [[2.5], [3.5]]}
