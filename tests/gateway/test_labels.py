"""Labels through the real model server: both forms of the ``labels`` signature, and the fall-backs when it fails.

The contract's ``labels`` takes ``batch`` int32 ``[-1]`` and answers ``[-1, K]`` rows (TFS's batching refuses a call
without an input); exports from before the change have no input and answer ``[K]``. The gateway reads either, and
when the call fails it uses the configured or conventional label map, then ``class_<id>``, with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.gateway.helpers import RunningGateway, gateway_settings, running_gateway, solid
from tests.support.modelserver import ModelServerHandle
from tests.support.tiny_models import LABELS

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gateway(model_server: ModelServerHandle, tiny_models: Path) -> Iterator[RunningGateway]:
    """Over the session's server: ``tiny`` (the batched form), ``legacy``, ``broken`` (a label map beside it),
    ``nomap`` and ``cls`` (``tests/support/session_models.py``)."""
    with running_gateway(gateway_settings(model_server.grpc_target, model_root=tiny_models / "root")) as running:
        yield running


def labels_of(gateway: RunningGateway, model: str) -> list[str]:
    body = httpx.get(f"{gateway.url}/v1/models/{model}", timeout=30).json()
    return [label["name"] for label in body["versions"][0]["labels"]]


def detected(gateway: RunningGateway, model: str) -> list[str]:
    response = httpx.post(
        f"{gateway.url}/v1/models/{model}:detect?min_score=0",
        content=solid(32, 32),
        headers={"Content-Type": "image/png"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return [d["label"] for d in response.json()["detections"]]


def test_the_batched_form_is_read_from_row_0(gateway: RunningGateway) -> None:
    assert labels_of(gateway, "tiny") == list(LABELS)
    assert detected(gateway, "tiny") == list(LABELS)


def test_the_legacy_form_without_input_still_works(gateway: RunningGateway) -> None:
    assert labels_of(gateway, "legacy") == list(LABELS)
    assert detected(gateway, "legacy") == list(LABELS)


def test_a_classifier_answers_its_labels_in_the_batched_form(gateway: RunningGateway) -> None:
    assert labels_of(gateway, "cls") == ["class1", "class2", "class3"]
    response = httpx.post(
        f"{gateway.url}/v1/models/cls:classify?top_k=3",
        content=solid(8, 8),
        headers={"Content-Type": "image/png"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert {p["label"] for p in response.json()["predictions"]} == {"class1", "class2", "class3"}


def test_a_failing_labels_call_falls_back_to_the_label_map_then_class_ids(
    model_server: ModelServerHandle, tiny_models: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A gateway of its own, started inside the capture: its start-up may already read some model's labels.
    settings = gateway_settings(model_server.grpc_target, model_root=tiny_models / "root")
    with caplog.at_level(logging.WARNING, logger="services.gateway.catalog"), running_gateway(settings) as gateway:
        assert detected(gateway, "broken") == ["ball", "box", "cone"]  # label_map.pbtxt beside the versions
        assert detected(gateway, "nomap") == ["class_1", "class_2", "class_3"]
    warnings = [r.getMessage() for r in caplog.records if "labels signature" in r.getMessage()]
    assert any("broken version 1 failed" in w and "label_map.pbtxt" in w for w in warnings), warnings
    assert any("nomap version 1 failed" in w and "class_<id>" in w for w in warnings), warnings
