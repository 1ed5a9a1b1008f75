"""Rollouts recorded in models.config: ``:shadow``, DELETE shadow and ``:promote`` move version labels in the file and
on the model server, and a gateway started afterwards serves what was promoted.

The test has its own model server over a models.config of its own (the session's file is shared by every test), with
the session's ``canary`` versions 1-3 and ``tiny`` as the model that must stay untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import text_format

from services import errors
from services.gateway.config_labels import ConfigLabels
from services.gateway.tfs import TfsClient
from services.gen.tfs import get_model_metadata_pb2, model_pb2, model_server_config_pb2, prediction_service_pb2_grpc
from tests.gateway.helpers import gateway_settings, running_gateway
from tests.gateway.test_shadow import AUTH, KEY, _wait_until_loaded, detect, promote, shadow, wait_for_samples
from tests.support.modelserver import ModelServerHandle, running_model_server

pytestmark = pytest.mark.integration

MIN_SAMPLES = 4


@pytest.fixture
def config_file(tiny_models: Path, tmp_path: Path) -> Path:
    root = tiny_models / "root"
    path = tmp_path / "models.config"
    path.write_text(
        "model_config_list {\n"
        f'  config {{ name: "canary" base_path: "{root / "canary"}" model_platform: "tensorflow"\n'
        '    model_version_policy { all {} } version_labels { key: "stable" value: 1 } }\n'
        f'  config {{ name: "tiny" base_path: "{root / "tiny"}" model_platform: "tensorflow"\n'
        '    version_labels { key: "stable" value: 1 } version_labels { key: "other" value: 1 } }\n'
        "}\n"
    )
    return path


@pytest.fixture
def server(config_file: Path, tiny_models: Path, tmp_path: Path) -> Iterator[ModelServerHandle]:
    with running_model_server(
        tiny_models / "root",
        log_dir=tmp_path,
        config_file=config_file,
        poll_seconds=0.5,
        wait_for=["canary", "tiny"],
        name="rollout-modelserver",
    ) as handle:
        yield handle


@contextlib.contextmanager
def gateway_client(server: ModelServerHandle, config_file: Path, tiny_models: Path) -> Iterator[httpx.Client]:
    """A gateway on ``config_file`` and a client of it, once canary's three versions are AVAILABLE to it."""
    with (
        running_gateway(settings(server, config_file, tiny_models)) as gateway,
        httpx.Client(base_url=gateway.url, timeout=30) as http,
    ):
        _wait_until_loaded(http, "canary", {1, 2, 3})
        yield http


def settings(server: ModelServerHandle, config_file: Path, tiny_models: Path) -> Any:
    return gateway_settings(
        server.grpc_target,
        model_config_file=config_file,
        model_root=tiny_models / "root",
        api_keys=[KEY],
        promote_min_samples=MIN_SAMPLES,
        shadow_max_concurrent=64,
        shadow_max_queued=1000,
        shadow_max_inflight_batches=1000,
    )


def entries(path: Path) -> dict[str, model_server_config_pb2.ModelConfig]:
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse(path.read_text(), config)
    return {entry.name: entry for entry in config.model_config_list.config}


def server_version(server: ModelServerHandle, model: str, label: str) -> int | None:
    """The version the model server itself serves under ``label`` (None: it has no such label)."""
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)  # type: ignore[no-untyped-call]
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=model_pb2.ModelSpec(name=model, version_label=label), metadata_field=["signature_def"]
        )
        try:
            response = stub.GetModelMetadata(request, timeout=10)
        except grpc.RpcError as err:
            if err.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            raise
    return int(response.model_spec.version.value)


def test_promotion_moves_the_labels_in_models_config_and_on_the_model_server_and_outlives_the_gateway(
    server: ModelServerHandle, config_file: Path, tiny_models: Path
) -> None:
    tiny_before = entries(config_file)["tiny"]
    with gateway_client(server, config_file, tiny_models) as http:
        assert detect(http, "canary").json()["version"] == 1  # the serving label, not the newest (3)

        # A shadow is recorded as the `shadow` label, and taken out again.
        assert shadow(http, "canary", 3, sample_rate=1.0).status_code == 200
        assert dict(entries(config_file)["canary"].version_labels) == {"stable": 1, "shadow": 3}
        assert server_version(server, "canary", "shadow") == 3
        assert http.delete("/v1/models/canary/versions/3/shadow", headers=AUTH).status_code == 200
        assert dict(entries(config_file)["canary"].version_labels) == {"stable": 1}
        assert server_version(server, "canary", "shadow") is None

        assert shadow(http, "canary", 2, sample_rate=1.0).status_code == 200
        for _ in range(MIN_SAMPLES):
            assert detect(http, "canary").json()["version"] == 1
        wait_for_samples(http, "canary", 2, MIN_SAMPLES)
        promoted = promote(http, "canary", 2)
        assert promoted.status_code == 200, promoted.text
        assert promoted.json()["scope"] == "model_config" and promoted.json()["previous_version"] == 1

        after = entries(config_file)
        assert dict(after["canary"].version_labels) == {"stable": 2}  # moved, and the shadow label gone
        assert after["tiny"] == tiny_before  # every other model as it was
        assert server_version(server, "canary", "stable") == 2
        assert http.get("/v1/models/canary").json()["version_labels"] == {"stable": 2}
        assert detect(http, "canary").json()["version"] == 2
        assert detect(http, "canary", "min_score=0&label=stable").json()["version"] == 2

    # A gateway started afterwards (a restart, another worker or pod) serves the promoted version too.
    with gateway_client(server, config_file, tiny_models) as http:
        assert detect(http, "canary").json()["version"] == 2


def test_a_label_the_model_server_refuses_is_a_conflict_and_the_file_is_put_back(
    server: ModelServerHandle, config_file: Path
) -> None:
    before = config_file.read_text()

    async def move(model: str, labels: dict[str, int | None]) -> None:
        tfs = TfsClient(server.grpc_target, deadline=30, max_message_bytes=1 << 20)
        try:
            await ConfigLabels(config_file, tfs).move(model, labels)
        finally:
            await tfs.close()

    with pytest.raises(errors.Conflict, match="version 9 of model canary"):
        asyncio.run(move("canary", {"stable": 9}))  # there is no version 9
    assert config_file.read_text() == before
    assert server_version(server, "canary", "stable") == 1
    with pytest.raises(errors.ModelNotFound, match="does not list model 'nosuch'"):
        asyncio.run(move("nosuch", {"stable": 1}))
    assert config_file.read_text() == before
