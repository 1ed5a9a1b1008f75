"""The REST client and ``spotter detect``: against the real gateway and model server, and the error mapping."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from typer.testing import CliRunner

from services import errors
from services.cli import app
from services.client.rest import RestClient, error_from_response
from tests.gateway.helpers import RunningGateway, gateway_settings, running_gateway, solid
from tests.support.modelserver import ModelServerHandle
from tests.support.processes import free_port
from tests.support.tiny_models import LABELS


@pytest.fixture(scope="module")
def gateway(model_server: ModelServerHandle, tiny_models: Path) -> Iterator[RunningGateway]:
    settings = gateway_settings(model_server.grpc_target, model_config_file=tiny_models / "models.config")
    with running_gateway(settings) as running:
        yield running


@pytest.mark.integration
def test_the_client_detects_annotates_classifies_and_lists(gateway: RunningGateway, tmp_path: Path) -> None:
    image = tmp_path / "white.png"
    image.write_bytes(solid(32, 32))
    with RestClient(gateway.url) as client:
        assert client.ready()
        result = client.detect(image, model="tiny", min_score=0.0, tile="off")
        assert (result.model, result.version, result.width, result.height) == ("tiny", 1, 32, 32)
        assert [d.label for d in result.detections] == list(LABELS)
        assert result.detections[0].box.xmax == pytest.approx(16.0, abs=1e-3)
        drawn = client.annotate(image.read_bytes(), model="tiny", accept="image/png", content_type="image/png")
        assert (drawn.media_type, drawn.version) == ("image/png", 1)
        assert drawn.image.startswith(b"\x89PNG")
        top = client.classify(solid(8, 8), model="cls", content_type="image/png", top_k=1)
        assert [p.label for p in top.predictions] == ["class3"]
        assert {"tiny", "cls"} <= {m["name"] for m in client.list_models()}
        assert client.get_model("tiny")["versions"][0]["kind"] == "detector"
        with pytest.raises(errors.ModelNotFound):
            client.detect(image, model="nothing")
        with pytest.raises(errors.InvalidInput):
            client.detect(b"not an image", model="tiny")


@pytest.mark.integration
def test_spotter_detect_prints_a_table_json_and_writes_the_annotated_image(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    image = tmp_path / "white.png"
    image.write_bytes(solid(32, 32))
    runner = CliRunner()
    table = runner.invoke(app, ["detect", str(image), "--model", "tiny", "--url", gateway.url, "--min-score", "0"])
    assert table.exit_code == 0, table.output
    assert "circle" in table.output and "3 detections" in table.output

    out = tmp_path / "out" / "drawn.png"
    as_json = runner.invoke(
        app, ["detect", str(image), "--model", "tiny", "--url", gateway.url, "--json", "--annotate", str(out)]
    )
    assert as_json.exit_code == 0, as_json.output
    body = json.loads(as_json.output)
    assert body["model"] == "tiny" and body["detections"][0]["label"] == "circle"
    assert Image.open(out).size == (32, 32)
    assert [p.name for p in out.parent.iterdir()] == ["drawn.png"]  # nothing half-written left beside it

    missing = runner.invoke(app, ["detect", str(image), "--model", "nothing", "--url", gateway.url])
    assert missing.exit_code == 1
    assert "model_not_found" in missing.output


def test_spotter_detect_says_when_the_gateway_is_not_there(tmp_path: Path) -> None:
    image = tmp_path / "white.png"
    image.write_bytes(solid(8, 8))
    result = CliRunner().invoke(app, ["detect", str(image), "--url", f"http://127.0.0.1:{free_port()}"])
    assert result.exit_code == 1
    assert "unavailable" in result.output and "cannot reach the gateway" in result.output


@pytest.mark.parametrize(
    ("status", "body", "headers", "error"),
    [
        (404, {"error": {"code": "model_not_found", "message": "m"}}, {}, errors.ModelNotFound),
        (400, {"error": {"code": "invalid_input", "message": "m"}}, {}, errors.InvalidInput),
        (503, {"error": {"code": "overloaded", "message": "m"}}, {"Retry-After": "4"}, errors.Overloaded),
        (503, {"error": {"code": "unavailable", "message": "m"}}, {}, errors.Unavailable),
        (504, {"error": {"code": "deadline_exceeded", "message": "m"}}, {}, errors.DeadlineExceeded),
        (418, {"error": {"code": "from_the_future", "message": "m"}}, {}, errors.SpotterError),
        (502, "<html>bad gateway</html>", {}, errors.UpstreamError),
    ],
)
def test_error_answers_become_our_errors(status: int, body: object, headers: dict, error: type) -> None:
    content = json.dumps(body) if isinstance(body, dict) else body
    raised = error_from_response(httpx.Response(status, content=content, headers=headers))
    assert type(raised) is error
    if isinstance(body, dict):
        assert raised.code == body["error"]["code"]
    if error is errors.Overloaded:
        assert raised.retry_after == 4.0  # type: ignore[attr-defined]
