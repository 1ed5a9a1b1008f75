"""The demo model over gRPC: its example images give the same detections as over REST, and the documented example
client (``docs/examples/grpc_client.py``) runs against the gateway."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from services.client.rpc import DetectionClient
from tests.conftest import REPO
from tests.gateway.conftest import DEMO
from tests.gateway.helpers import RunningGateway
from tests.rpc.helpers import as_rest, grpc_target, rest_detect

pytestmark = pytest.mark.integration

EXAMPLES = DEMO / "examples"
EXAMPLE_CLIENT = REPO / "docs" / "examples" / "grpc_client.py"
MEDIA_TYPES = {".jpg": "image/jpeg", ".png": "image/png"}


@pytest.fixture(scope="module")
def examples() -> list[Path]:
    if not (DEMO / "1" / "saved_model.pb").exists():
        pytest.fail("models/demo/1 is missing: run `make demo-model`")
    found = sorted(p for p in EXAMPLES.iterdir() if p.suffix in MEDIA_TYPES)
    assert len(found) >= 3, f"too few demo examples in {EXAMPLES}"
    return found


def same_detections(grpc_answer: dict[str, Any], rest_answer: dict[str, Any]) -> None:
    """Equal answers; numbers to 1e-4 (a batch of other images may round a model's float32 math differently)."""
    for key in ("model", "version", "width", "height"):
        assert grpc_answer[key] == rest_answer[key], key
    assert [(d["label"], d["class_id"]) for d in grpc_answer["detections"]] == [
        (d["label"], d["class_id"]) for d in rest_answer["detections"]
    ]
    for got, want in zip(grpc_answer["detections"], rest_answer["detections"], strict=True):
        assert got["score"] == pytest.approx(want["score"], abs=1e-4)
        assert got["box"] == pytest.approx(want["box"], abs=1e-2)


def test_grpc_and_rest_find_the_same_objects_in_the_demo_examples(
    examples: list[Path], client: DetectionClient, gateway: RunningGateway
) -> None:
    found = 0
    for path in examples:
        rest = rest_detect(gateway, "demo", path.read_bytes(), **{"Content-Type": MEDIA_TYPES[path.suffix]})
        answer = client.detect(path, model="demo", timeout=120)
        same_detections(as_rest(answer), rest)
        found += len(answer.detections)
    assert found > len(examples)  # the examples have objects, and the demo model finds them


def run_example(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE_CLIENT), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_the_example_client_runs(examples: list[Path], gateway: RunningGateway) -> None:
    image = examples[0]
    rest = rest_detect(gateway, "demo", image.read_bytes(), **{"Content-Type": MEDIA_TYPES[image.suffix]})

    as_json = run_example(grpc_target(gateway), str(image), "--model", "demo", "--json")
    assert as_json.returncode == 0, as_json.stderr
    answer = json.loads(as_json.stdout)
    answer["version"] = int(answer["version"])  # proto3 JSON writes int64 as a string
    same_detections(answer, rest)

    table = run_example(grpc_target(gateway), str(image))
    assert table.returncode == 0, table.stderr
    assert f"demo version {rest['version']}: {len(rest['detections'])} detections" in table.stdout

    missing = run_example(grpc_target(gateway), str(image), "--model", "no-such-model")
    assert missing.returncode == 1
    assert "model_not_found" in missing.stderr
