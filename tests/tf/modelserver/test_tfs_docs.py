"""TFS's own documented examples, replayed: each request and the answer TFS's documentation prints for it are
written out here, and the server must answer the same (the JSON compared as values: TFS pretty-prints).

Sources: ``tensorflow_serving/g3doc/api_rest.md`` ("Example" section, model ``half_plus_three`` version 123) and
the Docker tutorial (``docker.md``, model ``half_plus_two``). Our ``half_plus_*`` models are built like TFS's test
models (``y = 0.5 * x + c`` with the same signature names), see ``tf1_models.py``.
"""

from __future__ import annotations

import httpx
import pytest

from tests.support.modelserver import ModelServerHandle

pytestmark = pytest.mark.integration

# (method, path, request body or None, HTTP status, answer) exactly as the documentation shows them.
DOCUMENTED = [
    pytest.param(
        "GET",
        "/v1/models/half_plus_three",
        None,
        200,
        {
            "model_version_status": [
                {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            ]
        },
        id="api_rest-status",
    ),
    pytest.param(
        "POST",
        "/v1/models/half_plus_three:predict",
        '{"instances": [1.0,2.0,5.0]}',
        200,
        {"predictions": [3.5, 4.0, 5.5]},
        id="api_rest-predict",
    ),
    pytest.param(
        "POST",
        "/v1/models/half_plus_three:regress",
        '{"signature_name": "tensorflow/serving/regress", "examples": [{"x": 1.0}, {"x": 2.0}]}',
        200,
        {"results": [3.5, 4.0]},
        id="api_rest-regress",
    ),
    pytest.param(
        "POST",
        "/v1/models/half:predict",
        '{"instances": [1.0,5.0]}',
        404,
        {"error": "Servable not found for request: Latest(half)"},
        id="api_rest-404",
    ),
    pytest.param(
        "POST",
        "/v1/models/half_plus_two:predict",
        '{"instances": [1.0, 2.0, 5.0]}',
        200,
        {"predictions": [2.5, 3.0, 4.5]},
        id="docker-predict",
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "answer"), DOCUMENTED)
def test_documented_examples_answer_as_documented(
    tf1_server: ModelServerHandle, method: str, path: str, body: str | None, status: int, answer: object
) -> None:
    response = httpx.request(method, f"{tf1_server.rest_url}{path}", content=body, timeout=10)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == answer


def test_the_documented_classify_request_shape_is_accepted(tf1_server: ModelServerHandle) -> None:
    # api_rest.md's "Encoding binary values" request (it prints no answer): b64 and text features, no context.
    body = (
        '{"examples": [{"image": {"b64": "aW1hZ2UgYnl0ZXM="}, "caption": "seaside"},'
        ' {"image": {"b64": "YXdlc29tZSBpbWFnZSBieXRlcw=="}, "caption": "mountains"}]}'
    )
    response = httpx.post(f"{tf1_server.rest_url}/v1/models/classifier:classify", content=body, timeout=10)
    # The classifier needs an "f" feature these examples don't have: the model's parse says so, as TFS would.
    assert response.status_code == 400, response.text
    assert "Feature: f" in response.json()["error"]
    fixed = body.replace('"caption": "seaside"', '"caption": "seaside", "f": [1.0, 2.0]').replace(
        '"caption": "mountains"', '"caption": "mountains", "f": [3.0, 4.0]'
    )
    response = httpx.post(f"{tf1_server.rest_url}/v1/models/classifier:classify", content=fixed, timeout=10)
    assert response.status_code == 200, response.text
    assert [[score for _, score in row] for row in response.json()["results"]] == [
        [1.0, 2.0, len(b"image bytes")],
        [3.0, 4.0, len(b"awesome image bytes")],
    ]
