"""HTTP error answers: every error class has its status, and every failure has the one body shape.

The app runs for real (its lifespan too) with no model server behind it: what is tested here is decided before or
without the model server.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from services import errors
from services.gateway.app import create_app
from services.gateway.calls import http_status
from services.gateway.config import GatewaySettings
from tests.support.processes import free_port

# docs/architecture.md's table.
EXPECTED = {
    errors.InvalidInput: 400,
    errors.TrainingDiverged: 400,  # a job failure, shown in the job record; the class is bad input (not retried)
    errors.InvalidParameter: 422,
    errors.UnsupportedMediaType: 415,
    errors.NotAcceptable: 406,
    errors.PayloadTooLarge: 413,
    errors.NotFound: 404,
    errors.ModelNotFound: 404,
    errors.DatasetNotFound: 404,
    errors.JobNotFound: 404,
    errors.Conflict: 409,
    errors.Unauthenticated: 401,
    errors.PermissionDenied: 403,
    errors.Overloaded: 503,
    errors.Unavailable: 503,
    errors.DeadlineExceeded: 504,
    errors.UpstreamError: 502,
}


def all_subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= all_subclasses(sub)
    return found


def test_every_error_class_has_its_status() -> None:
    for cls in all_subclasses(errors.SpotterError):
        if cls.__module__ != "services.errors":
            continue
        assert cls in EXPECTED, f"{cls.__name__} has no HTTP status in the table"
        assert http_status(cls("x")) == EXPECTED[cls], cls.__name__


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("models")
    settings = GatewaySettings(
        _env_file=None,
        tfs_grpc=f"127.0.0.1:{free_port()}",  # nobody listens: the model server is down
        grpc_port=0,  # a free port: other gateways may hold 50051
        tfs_deadline_seconds=2.0,
        model_root=root,
        max_image_bytes=1000,
        retry_after_seconds=2.0,
    )
    app = create_app(settings)

    async def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"}
    assert {"code", "message"} <= set(body["error"])
    return body["error"]


def test_unknown_routes_answer_404_in_our_shape(client: TestClient) -> None:
    response = client.get("/v2/nothing")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"
    response = client.delete("/v1/models")
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("min_score=2", "min_score"),
        ("min_score=abc", "min_score"),
        ("max_detections=0", "max_detections"),
        ("max_detections=1001", "max_detections"),
        ("version=0", "version"),
        ("tile=sometimes", "tile"),
        ("colour=red", "colour"),
    ],
)
def test_bad_query_parameters_are_422_naming_the_parameter(client: TestClient, query: str, parameter: str) -> None:
    response = client.post(f"/v1/models/demo:detect?{query}", content=b"x", headers={"Content-Type": "image/png"})
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "invalid_parameter"
    assert parameter in error["message"]
    assert any(d["parameter"] == parameter for d in error["details"])


def test_version_and_label_together_are_422(client: TestClient) -> None:
    response = client.post("/v1/models/demo:detect?version=1&label=stable", content=b"x")
    assert response.status_code == 422
    assert "not both" in error_of(response)["message"]


def test_a_declared_oversized_body_is_413_before_reading(client: TestClient) -> None:
    response = client.post("/v1/models/demo:detect", content=b"x" * 5000, headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"


def test_a_streamed_oversized_body_is_413_while_reading(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"x" * 500

    # A generator body is sent chunked, without Content-Length: the limit must hold while it streams in.
    response = client.post("/v1/models/demo:detect", content=chunks(), headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 413


def test_model_server_down_is_503_with_retry_after(client: TestClient) -> None:
    response = client.post(
        "/v1/models/demo:detect", content=b"\x89PNG\r\n\x1a\n", headers={"Content-Type": "image/png"}
    )
    assert response.status_code == 503
    assert error_of(response)["code"] == "unavailable"
    assert response.headers["Retry-After"] == "2"


def test_readiness_says_why_not(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    response = client.get("/readyz")
    assert response.status_code == 503
    assert error_of(response)["message"]
    assert "Retry-After" in response.headers


def test_a_bug_is_500_internal_without_details(client: TestClient) -> None:
    response = client.get("/boom")
    assert response.status_code == 500
    assert error_of(response) == {"code": "internal", "message": "internal error; the gateway log has the details"}


def test_request_ids_are_accepted_or_made(client: TestClient) -> None:
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    made = client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"}).headers["X-Request-ID"]
    assert made != "bad id\twith spaces" and len(made) == 32


def test_the_openapi_document_lists_the_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/models/{name}:detect", "/v1/models/{name}:annotate", "/v1/models/{name}:classify"} <= set(paths)
    assert paths["/v1/models/{name}:detect"]["post"]["summary"]
    assert "multipart/form-data" in paths["/v1/models/{name}:detect"]["post"]["requestBody"]["content"]


def test_metrics_are_exposed(client: TestClient) -> None:
    text = client.get("/metrics").text
    assert "spotter_request_duration_seconds_bucket" in text
    assert "spotter_model_server_up 0.0" in text
