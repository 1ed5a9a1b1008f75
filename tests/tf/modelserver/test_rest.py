"""TFS's REST API: status, metadata and predict in TFS's JSON formats, errors with TFS's HTTP codes."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest

from tests.support.modelserver import ModelServerHandle
from tests.support.tiny_models import BOXES, expected_scores
from tests.tf.modelserver.conftest import SIZE, TINY_SCALES

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def http(server: ModelServerHandle) -> httpx.Client:
    with httpx.Client(base_url=server.rest_url, timeout=10) as client:
        yield client


def image(value: int) -> list:
    return np.full((SIZE, SIZE, 3), value, np.uint8).tolist()


def test_status_json_is_tfs_s(http: httpx.Client) -> None:
    response = http.get("/v1/models/tiny/versions/1")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    states = http.get("/v1/models/tiny").json()["model_version_status"]
    assert [(s["version"], s["state"]) for s in states] == [("2", "AVAILABLE"), ("1", "AVAILABLE")]


def test_status_of_a_failed_version_shows_its_error(http: httpx.Client) -> None:
    (status,) = http.get("/v1/models/broken").json()["model_version_status"]
    assert status["state"] == "END"
    assert status["status"]["error_code"] != "OK"
    assert status["status"]["error_message"]


def test_metadata_json(http: httpx.Client) -> None:
    body = http.get("/v1/models/tiny/versions/1/metadata").json()
    assert body["model_spec"] == {"name": "tiny", "signature_name": "", "version": "1"}
    signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    images = signature["inputs"]["images"]
    assert images["dtype"] == "DT_UINT8"
    assert [d["size"] for d in images["tensor_shape"]["dim"]] == ["-1", str(SIZE), str(SIZE), "3"]
    assert signature["method_name"] == "tensorflow/serving/predict"


def test_predict_row_format(http: httpx.Client) -> None:
    response = http.post("/v1/models/tiny:predict", json={"instances": [image(10), image(200)]})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == 2
    expected = expected_scores(np.array([image(10), image(200)]), TINY_SCALES[2])
    for row, scores in zip(predictions, expected, strict=True):
        assert set(row) == {"detection_boxes", "detection_scores", "detection_classes", "num_detections"}
        np.testing.assert_allclose(row["detection_scores"], scores, rtol=1e-6)
        assert row["detection_boxes"] == [list(b) for b in BOXES]
        assert row["num_detections"] == 3.0


def test_predict_floats_are_written_like_tfs(http: httpx.Client) -> None:
    # float32 0.1 is written "0.1" (its shortest round-trip form), not 0.10000000149011612; whole numbers get ".0".
    response = http.post("/v1/models/tiny/versions/2:predict", json={"instances": [image(51)]})
    assert '"detection_boxes": [[0.1, 0.1, 0.5, 0.5], [0.2, 0.3, 0.6, 0.9], [0.0, 0.0, 1.0, 1.0]]' in response.text
    assert '"detection_classes": [1.0, 2.0, 3.0]' in response.text


def test_predict_columnar_format_by_version(http: httpx.Client) -> None:
    batch = [image(30), image(60)]
    response = http.post("/v1/models/tiny/versions/1:predict", json={"inputs": {"images": batch}})
    outputs = response.json()["outputs"]
    np.testing.assert_allclose(outputs["detection_scores"], expected_scores(np.array(batch), TINY_SCALES[1]), rtol=1e-6)
    assert np.array(outputs["detection_boxes"]).shape == (2, 3, 4)
    # A single input may also be given bare.
    bare = http.post("/v1/models/tiny/versions/1:predict", json={"inputs": batch}).json()
    assert bare == response.json()


def test_predict_with_b64_strings(http: httpx.Client) -> None:
    data = b"\x00\x01 binary \xff"
    body = {"signature_name": "echo", "instances": ["text", {"b64": base64.b64encode(data).decode()}]}
    predictions = http.post("/v1/models/tiny:predict", json=body).json()["predictions"]
    # Outputs named *_bytes come back as {"b64": ...}; others as text.
    assert predictions[0] == {"text": "text", "text_bytes": {"b64": base64.b64encode(b"text").decode()}}
    assert predictions[1]["text_bytes"] == {"b64": base64.b64encode(data).decode()}

    columnar = http.post("/v1/models/tiny:predict", json={"signature_name": "echo", "inputs": ["a", "b"]}).json()
    assert columnar["outputs"]["text"] == ["a", "b"]


def test_predict_a_tf1_model(http: httpx.Client) -> None:
    response = http.post("/v1/models/odapi:predict", json={"instances": [image(255)]})
    np.testing.assert_allclose(response.json()["predictions"][0]["detection_scores"], [2.0, 1.0, 2 / 3], rtol=1e-6)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
        ("GET", "/v1/models/tiny/versions/9", None, 404, "Could not find version 9 of model tiny"),
        ("GET", "/v1/models/nope/metadata", None, 404, "Servable not found for request: Latest(nope)"),
        ("GET", "/v1/models", None, 400, "Missing model name in request."),
        ("GET", "/v1/foo", None, 400, "Malformed request: GET /v1/foo"),
        ("POST", "/v1/models/nope:predict", {"instances": [1]}, 404, "Servable not found for request: Latest(nope)"),
        ("POST", "/v1/models/tiny/versions/9:predict", {"instances": [1]}, 404, "Specific(tiny, 9)"),
        ("POST", "/v1/models/tiny/labels/x:predict", {"instances": [1]}, 400, "Unrecognized servable version label"),
        ("POST", "/v1/models/tiny:predict", b"{not json", 400, "JSON Parse error"),
        ("POST", "/v1/models/tiny:predict", b"", 400, "JSON Parse error: The document is empty"),
        ("POST", "/v1/models/tiny:predict", [1, 2], 400, "Is not object"),
        ("POST", "/v1/models/tiny:predict", {}, 400, "Missing 'inputs' or 'instances' key"),
        ("POST", "/v1/models/tiny:predict", {"instances": []}, 400, "No values in 'instances' array"),
        ("POST", "/v1/models/tiny:predict", {"instances": [1], "inputs": [1]}, 400, "expecting only one of"),
        ("POST", "/v1/models/tiny:predict", {"signature_name": 3, "instances": [1]}, 400, "must be a string value"),
        ("POST", "/v1/models/tiny:predict", {"signature_name": "x", "instances": [1]}, 400, 'name: "x" not found'),
        # TFS's REST API can't run a signature without inputs.
        (
            "POST",
            "/v1/models/tiny:predict",
            {"signature_name": "labels", "instances": [1]},
            400,
            "Failed to get input map for signature: labels",
        ),
        ("POST", "/v1/models/tiny:predict", {"instances": ["a"]}, 400, "is not of expected type: uint8"),
        ("POST", "/v1/models/tiny:predict", {"instances": [[1, 2], [3]]}, 400, "Expecting shape [2] but got: [1]"),
        ("POST", "/v1/models/tiny:predict", {"instances": [300]}, 400, "is not of expected type: uint8"),
        (
            "POST",
            "/v1/models/tiny:predict",
            {"signature_name": "echo", "instances": [{"b64": "%%"}]},
            400,
            "Unable to base64 decode",
        ),
        ("POST", "/v1/models/tiny/versions/1:classify", {}, 400, "key 'examples' is expected and was not found"),
        (
            "POST",
            "/v1/models/tiny/versions/1:regress",
            {"examples": [{"x": 1.0}]},
            400,
            "Expected regression signature method_name to be tensorflow/serving/regress",
        ),
    ],
)
def test_errors_are_json_with_tfs_s_codes(
    http: httpx.Client, method: str, path: str, body: object, status: int, message: str
) -> None:
    if isinstance(body, bytes):
        response = http.request(method, path, content=body)
    else:
        response = http.request(method, path, json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert message in response.json()["error"]


def test_paths_are_matched_case_insensitively_and_names_percent_decoded(http: httpx.Client) -> None:
    assert http.get("/V1/MODELS/tiny/VERSIONS/1").status_code == 200
    assert http.get("/v1/models/t%69ny").status_code == 200
