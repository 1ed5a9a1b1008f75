"""The API-key dependency: X-API-Key or Bearer; missing 401, wrong 403, none configured 403 saying what to set."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from services.gateway.api.deps import ApiKeyDep, InferenceKeyDep
from services.gateway.api.errors import install_error_handlers
from services.gateway.config import GatewaySettings


def app_with(settings: GatewaySettings) -> FastAPI:
    app = FastAPI()
    app.state.settings = settings
    install_error_handlers(app)

    @app.get("/guarded")
    async def guarded(_: ApiKeyDep) -> dict[str, bool]:
        return {"ok": True}

    @app.get("/inference")
    async def inference(_: InferenceKeyDep) -> dict[str, bool]:
        return {"ok": True}

    return app


@pytest.fixture
def keyed() -> Iterator[TestClient]:
    settings = GatewaySettings(_env_file=None, api_keys=[SecretStr("first-key"), SecretStr("second-key")])
    with TestClient(app_with(settings)) as client:
        yield client


@pytest.mark.parametrize(
    "headers",
    [{"X-API-Key": "first-key"}, {"X-API-Key": "second-key"}, {"Authorization": "Bearer second-key"}],
)
def test_a_configured_key_is_accepted(keyed: TestClient, headers: dict[str, str]) -> None:
    assert keyed.get("/guarded", headers=headers).json() == {"ok": True}


def test_a_missing_key_is_401(keyed: TestClient) -> None:
    response = keyed.get("/guarded")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert "X-API-Key" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "headers",
    [{"X-API-Key": "first-ke"}, {"X-API-Key": "first-key-and-more"}, {"Authorization": "Bearer nope"}],
)
def test_a_wrong_key_is_403(keyed: TestClient, headers: dict[str, str]) -> None:
    response = keyed.get("/guarded", headers=headers)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


def test_a_basic_authorization_header_is_no_key(keyed: TestClient) -> None:
    assert keyed.get("/guarded", headers={"Authorization": "Basic Zmlyc3Qta2V5"}).status_code == 401


def test_inference_is_open_unless_configured(keyed: TestClient) -> None:
    assert keyed.get("/inference").status_code == 200
    settings = GatewaySettings(_env_file=None, api_keys=[SecretStr("k")], inference_requires_key=True)
    with TestClient(app_with(settings)) as client:
        assert client.get("/inference").status_code == 401
        assert client.get("/inference", headers={"X-API-Key": "k"}).status_code == 200


def test_no_configured_key_explains_what_to_set() -> None:
    with TestClient(app_with(GatewaySettings(_env_file=None, api_keys=[]))) as client:
        response = client.get("/guarded", headers={"X-API-Key": "anything"})
    assert response.status_code == 403
    assert "SPOTTER_API_KEYS" in response.json()["error"]["message"]
