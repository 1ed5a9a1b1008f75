"""Classify, Regress and MultiInference on ``tf.Example`` input, over gRPC (official stubs) and REST, as TFS answers
them: results per example, context merged under each example, TFS's checks and words."""

from __future__ import annotations

import base64

import grpc
import httpx
import pytest
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    input_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tests.support.modelserver import ModelServerHandle
from tests.tf.modelserver.tf1_models import CLASS_NAMES, CLASSIFY, REGRESS

Stub = prediction_service_pb2_grpc.PredictionServiceStub
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stub(tf1_channel: grpc.Channel) -> Stub:
    return Stub(tf1_channel)


def example(**features: list[float] | bytes) -> example_pb2.Example:
    result = example_pb2.Example()
    for name, value in features.items():
        if isinstance(value, bytes):
            result.features.feature[name].bytes_list.value.append(value)
        else:
            result.features.feature[name].float_list.value.extend(value)
    return result


def example_list(*examples: example_pb2.Example) -> input_pb2.Input:
    request_input = input_pb2.Input()
    request_input.example_list.examples.extend(examples)
    return request_input


def test_classify_answers_classes_and_scores_per_example(stub: Stub) -> None:
    request = classification_pb2.ClassificationRequest(
        input=example_list(example(f=[0.5, 1.5], image=b"abcd"), example(f=[2.0, -1.0]))
    )
    request.model_spec.name = "classifier"
    response = stub.Classify(request, timeout=10)
    assert (response.model_spec.name, response.model_spec.version.value) == ("classifier", 1)
    assert response.model_spec.signature_name == "serving_default"
    got = [[(c.label, round(c.score, 5)) for c in item.classes] for item in response.result.classifications]
    expected = [[0.5, 1.5, 4.0], [2.0, -1.0, 0.0]]
    assert got == [list(zip(CLASS_NAMES, scores, strict=True)) for scores in expected]


def test_the_context_fills_what_each_example_leaves_out(stub: Stub) -> None:
    request_input = input_pb2.Input()
    request_input.example_list_with_context.context.CopyFrom(example(f=[9.0, 9.0], image=b"xyz"))
    request_input.example_list_with_context.examples.extend([example(f=[1.0, 2.0]), example(image=b"a")])
    request = classification_pb2.ClassificationRequest(input=request_input)
    request.model_spec.name = "classifier"
    request.model_spec.signature_name = "scores_only"
    response = stub.Classify(request, timeout=10)
    scores = [[c.score for c in item.classes] for item in response.result.classifications]
    assert scores == [[1.0, 2.0, 3.0], [9.0, 9.0, 1.0]]  # the example's own features win
    assert {c.label for item in response.result.classifications for c in item.classes} == {""}


def test_regress_answers_one_value_per_example(stub: Stub) -> None:
    request = regression_pb2.RegressionRequest(input=example_list(example(x=[1.0]), example(x=[4.0])))
    request.model_spec.name = "half_plus_two"
    request.model_spec.signature_name = REGRESS
    response = stub.Regress(request, timeout=10)
    assert [r.value for r in response.result.regressions] == [2.5, 4.0]
    assert response.model_spec.signature_name == REGRESS


def test_multi_inference_runs_several_signatures_on_one_input(stub: Stub) -> None:
    request = inference_pb2.MultiInferenceRequest(input=example_list(example(x=[2.0], x2=[10.0])))
    for signature, method in [(REGRESS, REGRESS), ("regress_x2_to_y3", REGRESS), (CLASSIFY, CLASSIFY)]:
        task = request.tasks.add(method_name=method)
        task.model_spec.name = "half_plus_three"
        task.model_spec.signature_name = signature
    response = stub.MultiInference(request, timeout=10)
    first, second, third = response.results
    assert [r.value for r in first.regression_result.regressions] == [4.0]
    assert [r.value for r in second.regression_result.regressions] == [8.0]
    assert [c.score for c in third.classification_result.classifications[0].classes] == [4.0]
    assert [r.model_spec.signature_name for r in response.results] == [REGRESS, "regress_x2_to_y3", CLASSIFY]
    assert {r.model_spec.version.value for r in response.results} == {123}


@pytest.mark.parametrize(
    ("method", "signature", "request_input", "code", "message"),
    [
        ("Classify", "", input_pb2.Input(), grpc.StatusCode.INVALID_ARGUMENT, "Input is empty."),
        (
            "Classify",
            "sum",
            example_list(example(f=[1.0, 2.0])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Expected classification signature method_name to be tensorflow/serving/classify. "
            "Was: tensorflow/serving/regress",
        ),
        (
            "Regress",
            "nope",
            example_list(example(f=[1.0, 2.0])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "No signature was found with the name: nope",
        ),
        # The model's own parse of a tf.Example without its required feature.
        ("Regress", "sum", example_list(example(image=b"x")), grpc.StatusCode.INVALID_ARGUMENT, "Feature: f"),
    ],
)
def test_bad_requests_get_tfs_s_codes_and_words(
    stub: Stub, method: str, signature: str, request_input: input_pb2.Input, code: grpc.StatusCode, message: str
) -> None:
    message_type = (
        classification_pb2.ClassificationRequest if method == "Classify" else regression_pb2.RegressionRequest
    )
    request = message_type(input=request_input)
    request.model_spec.name = "classifier"
    request.model_spec.signature_name = signature
    with pytest.raises(grpc.RpcError) as info:
        getattr(stub, method)(request, timeout=10)
    assert info.value.code() == code
    assert message in info.value.details()


def test_multi_inference_refuses_two_models(stub: Stub) -> None:
    request = inference_pb2.MultiInferenceRequest(input=example_list(example(x=[1.0])))
    for model in ("half_plus_two", "half_plus_three"):
        task = request.tasks.add(method_name=REGRESS)
        task.model_spec.name = model
        task.model_spec.signature_name = REGRESS
    with pytest.raises(grpc.RpcError) as info:
        stub.MultiInference(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "must access the same model name" in info.value.details()


def test_rest_classify_with_b64_bytes_and_a_context(tf1_server: ModelServerHandle) -> None:
    body = {
        "context": {"f": [7.0, 8.0]},
        "examples": [{"image": {"b64": base64.b64encode(b"\x00\xffjpeg").decode()}}, {"f": [0.25, 0.5]}],
    }
    response = httpx.post(f"{tf1_server.rest_url}/v1/models/classifier:classify", json=body, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "results": [
            [["cat", 7.0], ["dog", 8.0], ["bird", 6.0]],
            [["cat", 0.25], ["dog", 0.5], ["bird", 0.0]],
        ]
    }


def test_rest_regress_by_version_and_signature(tf1_server: ModelServerHandle) -> None:
    body = {"signature_name": "sum", "examples": [{"f": [1.5, 2.0]}, {"f": [-1.0, 0.1]}]}
    response = httpx.post(f"{tf1_server.rest_url}/v1/models/classifier/versions/1:regress", json=body, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json() == {"results": [3.5, -0.9]}


@pytest.mark.parametrize(
    ("verb", "body", "status", "message"),
    [
        ("regress", {"signature_name": "sum"}, 400, "When method is classify, key 'examples' is expected"),
        ("classify", {"examples": {}}, 400, "Expecting 'examples' value to be an list/array"),
        ("classify", {"examples": []}, 400, "'examples' value is an empty array"),
        ("classify", {"examples": [[1.0]]}, 400, "Example must be JSON object but got JSON Array"),
        (
            "classify",
            {"examples": [{"f": [1.0, "a"]}]},
            400,
            "Unexpected element type in feature: f expecting type: float",
        ),
        ("classify", {"examples": [{"f": None}]}, 400, "Feature: f has element with unexpected JSON type: Null"),
        ("classify", {"examples": [{"f": [[1.0]]}]}, 400, "Feature: f has element with unexpected JSON type: Array"),
        ("classify", {"examples": [{"image": {"b64": "%%"}}]}, 400, "Unable to base64 decode"),
        ("regress", {"examples": [{"f": [1.0, 2.0]}]}, 400, "Expected regression signature method_name"),
    ],
)
def test_rest_classify_and_regress_errors(
    tf1_server: ModelServerHandle, verb: str, body: object, status: int, message: str
) -> None:
    response = httpx.post(f"{tf1_server.rest_url}/v1/models/classifier:{verb}", json=body, timeout=10)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
