"""Spotter's TFS stubs (``services.gen.tfs``, generated from ``protos/tfs``) are wire-compatible with
``tensorflow-serving-api``'s: the same messages serialise byte for byte alike, and each side parses the other's
bytes into an equal message. The official side runs in a subprocess (one process can't hold both)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import pytest

from services.gen.tfs import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    predict_pb2,
    types_pb2,
)
from tests.conftest import REPO
from tests.support.official_protos import build_messages, serialize

OURS = SimpleNamespace(
    model_management_pb2=model_management_pb2,
    predict_pb2=predict_pb2,
    get_model_metadata_pb2=get_model_metadata_pb2,
    get_model_status_pb2=get_model_status_pb2,
    types_pb2=types_pb2,
)


@pytest.fixture(scope="module")
def exchange() -> tuple[dict[str, Any], dict[str, Any]]:
    """Our messages, and the official side's answer to our serializations."""
    ours = build_messages(OURS)
    result = subprocess.run(
        [sys.executable, "-m", "tests.support.official_protos"],
        input=json.dumps(serialize(ours)),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return ours, json.loads(result.stdout)


NAMES = [
    "PredictRequest",
    "PredictRequest(label)",
    "PredictResponse",
    "GetModelMetadataRequest",
    "GetModelMetadataResponse",
    "GetModelStatusRequest",
    "GetModelStatusResponse",
    "ReloadConfigRequest",
    "ReloadConfigResponse",
]


@pytest.mark.parametrize("name", NAMES)
def test_same_bytes(exchange: tuple[dict[str, Any], dict[str, Any]], name: str) -> None:
    ours, theirs = exchange
    assert base64.b64decode(theirs["official"][name]) == ours[name].SerializeToString(deterministic=True)


@pytest.mark.parametrize("name", NAMES)
def test_official_stubs_parse_our_bytes(exchange: tuple[dict[str, Any], dict[str, Any]], name: str) -> None:
    ours, theirs = exchange
    assert theirs["parsed_equal"][name] is True
    assert base64.b64decode(theirs["reserialized"][name]) == ours[name].SerializeToString(deterministic=True)


@pytest.mark.parametrize("name", NAMES)
def test_our_stubs_parse_official_bytes(exchange: tuple[dict[str, Any], dict[str, Any]], name: str) -> None:
    ours, theirs = exchange
    parsed = type(ours[name])()
    parsed.ParseFromString(base64.b64decode(theirs["official"][name]))
    assert parsed == ours[name]
    # Nothing was left over as unknown fields (they would be written back out).
    assert parsed.SerializeToString(deterministic=True) == ours[name].SerializeToString(deterministic=True)


def test_the_signature_map_inside_any_unpacks_with_our_stubs(exchange: tuple[dict[str, Any], dict[str, Any]]) -> None:
    _, theirs = exchange
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.ParseFromString(base64.b64decode(theirs["official"]["GetModelMetadataResponse"]))
    assert response.metadata["signature_def"].type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_map)
    images = signature_map.signature_def["serving_default"].inputs["images"]
    assert (images.dtype, [d.size for d in images.tensor_shape.dim]) == (types_pb2.DT_UINT8, [-1, 320, 320, 3])
