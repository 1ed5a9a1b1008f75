"""The gRPC API, talked to with the official ``tensorflow-serving-api`` client stubs."""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tests.support.modelserver import ModelServerHandle
from tests.support.tiny_models import BOXES, LABELS, expected_scores
from tests.tf.modelserver.conftest import SIZE, TINY_SCALES

pytestmark = pytest.mark.integration

Stub = prediction_service_pb2_grpc.PredictionServiceStub


def images(batch: int = 2, value: int = 100) -> np.ndarray:
    rng = np.random.default_rng(value)
    return rng.integers(0, 256, (batch, SIZE, SIZE, 3), dtype=np.uint8)


def request(model: str = "tiny", *, signature: str = "", **inputs: np.ndarray) -> predict_pb2.PredictRequest:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model
    if signature:
        req.model_spec.signature_name = signature
    for name, value in inputs.items():
        req.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return req


def error_of(call, *args) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, timeout=10)
    return info.value


def test_predict_answers_the_latest_version_with_the_signature_used(prediction: Stub) -> None:
    batch = images()
    response = prediction.Predict(request(images=batch), timeout=10)

    assert response.model_spec.name == "tiny"
    assert response.model_spec.version.value == 2
    assert response.model_spec.signature_name == "serving_default"
    outputs = {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
    assert set(outputs) == {"detection_boxes", "detection_scores", "detection_classes", "num_detections"}
    np.testing.assert_allclose(outputs["detection_scores"], expected_scores(batch, TINY_SCALES[2]), rtol=1e-5)
    np.testing.assert_allclose(outputs["detection_boxes"], np.array([BOXES] * 2, np.float32))
    assert outputs["detection_classes"].tolist() == [[1.0, 2.0, 3.0]] * 2
    assert outputs["num_detections"].tolist() == [3.0, 3.0]
    # Like TFS, outputs come in the typed fields (Tensor::AsProtoField), not tensor_content.
    assert response.outputs["detection_scores"].float_val and not response.outputs["detection_scores"].tensor_content


def test_each_loaded_version_answers_on_request(prediction: Stub) -> None:
    batch = images(1)
    for version, scale in TINY_SCALES.items():
        req = request(images=batch)
        req.model_spec.version.value = version
        response = prediction.Predict(req, timeout=10)
        assert response.model_spec.version.value == version
        scores = tf.make_ndarray(response.outputs["detection_scores"])
        np.testing.assert_allclose(scores, expected_scores(batch, scale), rtol=1e-5)


def test_output_filter_returns_only_the_outputs_asked(prediction: Stub) -> None:
    req = request(images=images(1))
    req.output_filter.append("detection_scores")
    response = prediction.Predict(req, timeout=10)
    assert list(response.outputs) == ["detection_scores"]

    req.output_filter.append("nope")
    error = error_of(prediction.Predict, req)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "output tensor alias not found in signature: nope" in error.details()


def test_a_signature_without_inputs_works(prediction: Stub) -> None:
    response = prediction.Predict(request(signature="labels"), timeout=10)
    assert response.model_spec.signature_name == "labels"
    assert tf.make_ndarray(response.outputs["ids"]).tolist() == [1, 2, 3]
    assert [n.decode() for n in tf.make_ndarray(response.outputs["names"])] == list(LABELS)


def test_string_inputs_and_outputs(prediction: Stub) -> None:
    text = np.array([b"hello", b"\x00\xff bytes"], dtype=object)
    response = prediction.Predict(request(signature="echo", text=text), timeout=10)
    assert tf.make_ndarray(response.outputs["text"]).tolist() == text.tolist()
    assert list(response.outputs["text_bytes"].string_val) == text.tolist()


def test_detect_encoded_takes_image_bytes(prediction: Stub) -> None:
    png = tf.io.encode_png(tf.constant(images(1)[0])).numpy()
    response = prediction.Predict(request(signature="detect_encoded", encoded=np.array([png], object)), timeout=10)
    np.testing.assert_allclose(
        tf.make_ndarray(response.outputs["detection_scores"]), expected_scores(images(1), 1.0), rtol=1e-4
    )


def test_a_tf1_session_style_model_is_served(prediction: Stub) -> None:
    batch = images(3)
    response = prediction.Predict(request("odapi", inputs=batch), timeout=10)
    assert response.model_spec.version.value == 1
    np.testing.assert_allclose(
        tf.make_ndarray(response.outputs["detection_scores"]), expected_scores(batch, 2.0), rtol=1e-5
    )


@pytest.mark.parametrize(
    ("name", "version", "label", "code", "message"),
    [
        ("nope", None, None, grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)"),
        ("tiny", 5, None, grpc.StatusCode.NOT_FOUND, "Servable not found for request: Specific(tiny, 5)"),
        # TFS: a label the config doesn't define is INVALID_ARGUMENT, not NOT_FOUND.
        ("tiny", None, "stable", grpc.StatusCode.INVALID_ARGUMENT, "Unrecognized servable version label: stable"),
        ("", None, None, grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified."),
        # A version that failed to load is not servable.
        ("broken", None, None, grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(broken)"),
    ],
)
def test_unknown_model_version_or_label(
    prediction: Stub, name: str, version: int | None, label: str | None, code: grpc.StatusCode, message: str
) -> None:
    req = request(name, images=images(1))
    if version is not None:
        req.model_spec.version.value = version
    if label is not None:
        req.model_spec.version_label = label
    error = error_of(prediction.Predict, req)
    assert (error.code(), error.details()) == (code, message)

    metadata = get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=req.model_spec, metadata_field=["signature_def"]
    )
    assert error_of(prediction.GetModelMetadata, metadata).code() == code


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            {},
            "input size does not match signature: 0!=1 len({}) != len({images}). Sent extra: {}. Missing but "
            "required: {images}.",
        ),
        ({"images": images(1), "extra": images(1)}, "Sent extra: {extra}."),
        ({"pictures": images(1)}, "input tensor alias not found in signature: pictures."),
        # Dtypes and shapes are the runtime's to check, as in TFS (tests/tf/modelserver/test_tf1.py has shapes).
        ({"images": images(1).astype(np.float32)}, "Type mismatch: actual float vs. expect uint8"),
    ],
    ids=["missing", "extra", "renamed", "dtype"],
)
def test_bad_inputs_are_invalid_argument(prediction: Stub, inputs: dict[str, np.ndarray], message: str) -> None:
    error = error_of(prediction.Predict, request(**inputs))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.details()


def test_a_tensor_whose_content_does_not_match_its_shape(prediction: Stub) -> None:
    req = request(images=images(1))
    req.inputs["images"].tensor_shape.dim[0].size = 2
    error = error_of(prediction.Predict, req)
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "tensor parsing error: images")


def test_an_unknown_signature_is_failed_precondition(prediction: Stub) -> None:
    error = error_of(prediction.Predict, request(signature="nope", images=images(1)))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        'Serving signature key "nope" not found.',
    )


def test_metadata_is_the_saved_models_signature_defs(prediction: Stub) -> None:
    req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    req.model_spec.name = "tiny"
    response = prediction.GetModelMetadata(req, timeout=10)

    assert response.model_spec.name == "tiny"
    assert response.model_spec.version.value == 2
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_map)
    signatures = signature_map.signature_def
    assert {"serving_default", "detect_encoded", "labels", "echo"} <= set(signatures)
    images_info = signatures["serving_default"].inputs["images"]
    assert images_info.dtype == tf.uint8.as_datatype_enum
    assert [d.size for d in images_info.tensor_shape.dim] == [-1, SIZE, SIZE, 3]
    boxes = signatures["serving_default"].outputs["detection_boxes"]
    assert (boxes.dtype, [d.size for d in boxes.tensor_shape.dim]) == (tf.float32.as_datatype_enum, [-1, 3, 4])
    assert signatures["detect_encoded"].inputs["encoded"].dtype == tf.string.as_datatype_enum
    assert not signatures["labels"].inputs
    assert signatures["serving_default"].method_name == "tensorflow/serving/predict"


def test_metadata_of_a_tf1_model_has_its_dynamic_dims(prediction: Stub) -> None:
    req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    req.model_spec.name = "odapi"
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    prediction.GetModelMetadata(req, timeout=10).metadata["signature_def"].Unpack(signature_map)
    info = signature_map.signature_def["serving_default"].inputs["inputs"]
    assert info.name == "image_tensor:0"
    assert [d.size for d in info.tensor_shape.dim] == [-1, -1, -1, 3]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ([], "GetModelMetadataRequest must specify at least one metadata_field"),
        (["x"], "Metadata field x is not supported"),
    ],
)
def test_metadata_fields_other_than_signature_def(prediction: Stub, fields: list[str], message: str) -> None:
    req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=fields)
    req.model_spec.name = "tiny"
    error = error_of(prediction.GetModelMetadata, req)
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)


def test_status_lists_every_version_latest_first(models: model_service_pb2_grpc.ModelServiceStub) -> None:
    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = "tiny"
    response = models.GetModelStatus(req, timeout=10)
    assert [(s.version, s.state) for s in response.model_version_status] == [
        (2, get_model_status_pb2.ModelVersionStatus.AVAILABLE),
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE),
    ]
    assert all(s.status.error_code == 0 and s.status.error_message == "" for s in response.model_version_status)

    req.model_spec.version.value = 1
    assert [s.version for s in models.GetModelStatus(req, timeout=10).model_version_status] == [1]


def test_status_not_found(models: model_service_pb2_grpc.ModelServiceStub) -> None:
    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = "nope"
    error = error_of(models.GetModelStatus, req)
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, "Could not find any versions of model nope")
    req.model_spec.name = "tiny"
    req.model_spec.version.value = 9
    error = error_of(models.GetModelStatus, req)
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, "Could not find version 9 of model tiny")
    # An integer folder without saved_model.pb is not a version; examples/ and label_map.pbtxt are ignored.
    req.model_spec.version.value = 7
    assert error_of(models.GetModelStatus, req).code() == grpc.StatusCode.NOT_FOUND
    # Neither is a hidden folder at the root a model.
    req.model_spec.name = ".tmp-upload"
    req.model_spec.ClearField("version")
    assert error_of(models.GetModelStatus, req).code() == grpc.StatusCode.NOT_FOUND


def test_a_failed_load_ends_with_its_error(models: model_service_pb2_grpc.ModelServiceStub) -> None:
    for name in ("broken", "badwarm"):
        req = get_model_status_pb2.GetModelStatusRequest()
        req.model_spec.name = name
        (status,) = models.GetModelStatus(req, timeout=10).model_version_status
        assert status.state == get_model_status_pb2.ModelVersionStatus.END
        assert status.status.error_code != 0
        assert status.status.error_message


def test_classify_needs_a_model_spec_and_a_classify_signature(prediction: Stub) -> None:
    error = error_of(prediction.Classify, classification_pb2.ClassificationRequest())
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
    req = classification_pb2.ClassificationRequest()
    req.model_spec.name = "tiny"
    req.input.example_list.examples.add()
    error = error_of(prediction.Classify, req)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == (
        "Expected classification signature method_name to be tensorflow/serving/classify. "
        "Was: tensorflow/serving/predict"
    )


def test_the_request_id_is_logged(prediction: Stub, server: ModelServerHandle) -> None:
    error = error_of(
        lambda req, timeout: prediction.Predict(req, timeout, metadata=[("x-request-id", "rid-4711")]), request("nope")
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    lines = [json.loads(line) for line in server.server.log().splitlines() if line.startswith("{")]
    assert any(line.get("request_id") == "rid-4711" and "Predict failed" in line["message"] for line in lines)


def test_concurrent_predicts_on_two_versions(prediction: Stub) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> tuple[int, bool]:
        version = 1 + i % 2
        batch = images(1 + i % 3, value=i)
        req = request(images=batch)
        req.model_spec.version.value = version
        response = prediction.Predict(req, timeout=30)
        scores = tf.make_ndarray(response.outputs["detection_scores"])
        return response.model_spec.version.value, np.allclose(scores, expected_scores(batch, TINY_SCALES[version]))

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(64)))
    assert [v for v, _ in results] == [1 + i % 2 for i in range(64)]
    assert all(ok for _, ok in results)
