"""Helpers for the gRPC API tests: gateway settings with the gRPC API on a free local port, its target, metrics."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from services import errors
from services.gateway.config import GatewaySettings
from services.vision.results import DetectResult
from tests.gateway.helpers import RunningGateway, gateway_settings
from tests.support.modelserver import ModelServerHandle


def rpc_settings(model_server: ModelServerHandle, tiny_models: Path, **overrides: object) -> GatewaySettings:
    """The gateway over the session's model server and its models, gRPC on a free 127.0.0.1 port."""
    options: dict[str, object] = {"model_config_file": tiny_models / "models.config", "grpc_host": "127.0.0.1"}
    options.update(overrides)
    return gateway_settings(model_server.grpc_target, **options)


def grpc_target(gateway: RunningGateway) -> str:
    return f"127.0.0.1:{gateway.app.state.grpc_port}"


def metric_value(gateway: RunningGateway, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``, from the gateway's ``/metrics``."""
    total = 0.0
    for line in httpx.get(f"{gateway.url}/metrics", timeout=10).text.splitlines():
        match = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", line)
        if match is None:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(1) or ""))
        if all(found.get(key) == value for key, value in labels.items()):
            total += float(match.group(2))
    return total


def predict_calls(model_server: ModelServerHandle, model: str) -> int:
    """Successful Predict calls the model server has served for ``model`` (TFS's own counter)."""
    pattern = rf'^:tensorflow:serving:request_count\{{model_name="{model}",status="OK"\}} (\d+)'
    return sum(int(m.group(1)) for m in re.finditer(pattern, model_server.metrics(), re.MULTILINE))


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Whether ``condition`` became true within ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def as_rest(response: DetectResult) -> dict[str, Any]:
    """A gRPC client's answer in the REST API's JSON shape, field by field (not through the result's own
    ``to_dict``), to compare the two transports."""
    return {
        "model": response.model,
        "version": response.version,
        "width": response.width,
        "height": response.height,
        "detections": [
            {
                "label": d.label,
                "class_id": d.class_id,
                "score": d.score,
                "box": {"xmin": d.box.xmin, "ymin": d.box.ymin, "xmax": d.box.xmax, "ymax": d.box.ymax},
            }
            for d in response.detections
        ],
    }


def rest_detect(gateway: RunningGateway, model: str, image: bytes, query: str = "", **headers: str) -> dict[str, Any]:
    """``POST /v1/models/{model}:detect`` on the same gateway; the JSON answer."""
    response = httpx.post(
        f"{gateway.url}/v1/models/{model}:detect?{query}",
        content=image,
        headers={"Content-Type": "image/png", **headers},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def failure(call: Callable[[], Any]) -> tuple[grpc.StatusCode, errors.SpotterError, dict[str, str]]:
    """The status, the client's exception and the trailing metadata of a call that must fail."""
    with pytest.raises(errors.SpotterError) as raised:
        call()
    rpc_error = raised.value.__cause__
    assert isinstance(rpc_error, grpc.RpcError)
    return rpc_error.code(), raised.value, dict(rpc_error.trailing_metadata() or ())  # type: ignore[attr-defined]
