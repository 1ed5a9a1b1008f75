"""The gRPC client without a gateway: what it imports, what it refuses before sending, and a gateway that is not
there. (Against a running gateway it is exercised by every test in tests/rpc.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

from services import errors
from services.client.rpc import DetectionClient, detect_request
from services.gen.spotter.v1 import detection_pb2
from tests.conftest import REPO
from tests.support.processes import free_port


def test_importing_the_client_pulls_in_no_server_or_ml_package() -> None:
    heavy = ("tensorflow", "fastapi", "starlette", "httpx", "uvicorn", "numpy", "PIL", "pydantic", "redis")
    probe = f"import sys, services.client.rpc; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "[]"


def test_the_request_carries_presence_and_the_selector() -> None:
    request = detect_request(b"img", model="demo", label="stable", min_score=0.0, tile="off")
    assert request.WhichOneof("selector") == "label"
    assert request.HasField("min_score") and request.min_score == 0.0
    assert not request.HasField("max_detections")
    assert request.tile == detection_pb2.TILE_MODE_OFF
    assert detect_request(b"img", model="demo").tile == detection_pb2.TILE_MODE_AUTO


def test_what_the_client_refuses_before_sending() -> None:
    with pytest.raises(errors.InvalidParameter, match="version or a label"):
        detect_request(b"img", model="demo", version=1, label="stable")
    with pytest.raises(errors.InvalidParameter, match="tile"):
        detect_request(b"img", model="demo", tile="sometimes")  # type: ignore[arg-type]


def test_a_gateway_that_is_not_there_is_unavailable() -> None:
    with DetectionClient(f"127.0.0.1:{free_port()}", timeout=5) as client:
        with pytest.raises(errors.Unavailable):
            client.detect(b"img", model="demo")
        with pytest.raises(errors.Unavailable):
            list(client.detect_stream([b"img"], model="demo"))
