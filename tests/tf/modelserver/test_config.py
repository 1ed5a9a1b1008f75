"""A TFS ``models.config``: parsed with the official messages; its models, version policies and labels served."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from services.modelserver.config import ConfigError, ConfiguredModels, VersionPolicy, read_model_config
from tests.support.modelserver import ModelServerHandle, running_model_server
from tests.tf.modelserver.conftest import SIZE

DEFAULT = VersionPolicy("latest", num_versions=2)

CONFIG = """
model_config_list {
  config {
    name: "tiny"
    base_path: "models/tiny"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 1 versions: 2 } }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 2 }
  }
  config {
    name: "detector"
    base_path: "%s"
    model_platform: "tensorflow"
    model_version_policy { latest { num_versions: 1 } }
  }
}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.config"
    path.write_text(text)
    return path


def test_config_is_read_with_tfs_s_messages(tmp_path: Path) -> None:
    sources = read_model_config(write(tmp_path, CONFIG % "/abs/odapi"), DEFAULT)
    tiny, detector = sources
    assert tiny.name == "tiny"
    assert tiny.base_path == tmp_path / "models" / "tiny"  # relative to the config file's folder
    assert tiny.policy == VersionPolicy("specific", versions=frozenset({1, 2}))
    assert dict(tiny.labels) == {"stable": 1, "canary": 2}
    assert detector.base_path == Path("/abs/odapi")
    assert detector.policy == VersionPolicy("latest", num_versions=1)


def test_policies() -> None:
    assert VersionPolicy("latest", num_versions=2).select({1, 3, 2}) == {2, 3}
    assert VersionPolicy("all").select({1, 3}) == {1, 3}
    assert VersionPolicy("specific", versions=frozenset({1, 5})).select({1, 2, 3}) == {1}


def test_a_model_without_a_policy_gets_the_default(tmp_path: Path) -> None:
    text = 'model_config_list { config { name: "m" base_path: "/m" model_platform: "tensorflow" } }'
    (source,) = read_model_config(write(tmp_path, text), DEFAULT)
    assert source.policy == DEFAULT
    all_text = text.replace("} }", "model_version_policy { all {} } } }")
    assert read_model_config(write(tmp_path, all_text), DEFAULT)[0].policy == VersionPolicy("all")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('model_config_list { config { name: "m" base_path: "/m" model_platform: "onnx" } }', "unsupported platform"),
        ('model_config_list { config { name: "m" base_path: "/m" } }', "unsupported platform (none)"),
        (
            'model_config_list { config { name: "m" base_path: "/m" model_platform: "tensorflow" } '
            'config { name: "m" base_path: "/n" model_platform: "tensorflow" } }',
            "Illegal to list model m multiple times",
        ),
        ("model_config_list { config { nam: 1 } }", "not a valid ModelServerConfig"),
        ('model_config_list { config { name: "m" model_platform: "tensorflow" } }', "has no base_path"),
    ],
)
def test_bad_configs(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_model_config(write(tmp_path, text), DEFAULT)


def test_a_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        read_model_config(tmp_path / "nope.config", DEFAULT)


@pytest.fixture(scope="module")
def configured(model_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServerHandle]:
    config = model_root.parent / "models.config"
    config.write_text(CONFIG % (model_root / "odapi"))
    with running_model_server(
        model_root,
        log_dir=tmp_path_factory.mktemp("config-logs"),
        config_file=config,
        wait_for=["tiny", "detector"],
        name="configured",
    ) as handle:
        handle.wait_available("tiny", 1)
        yield handle


def _predict(handle: ModelServerHandle, name: str, label: str | None = None) -> int:
    with grpc.insecure_channel(handle.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        req = predict_pb2.PredictRequest()
        req.model_spec.name = name
        if label is not None:
            req.model_spec.version_label = label
        tensor = np.zeros((1, SIZE, SIZE, 3), np.uint8)
        req.inputs["inputs" if name == "detector" else "images"].CopyFrom(tf.make_tensor_proto(tensor))
        return int(stub.Predict(req, timeout=10).model_spec.version.value)


@pytest.mark.integration
def test_version_labels_select_versions(configured: ModelServerHandle) -> None:
    assert _predict(configured, "tiny") == 2
    assert _predict(configured, "tiny", "stable") == 1
    assert _predict(configured, "tiny", "canary") == 2
    with pytest.raises(grpc.RpcError) as info:
        _predict(configured, "tiny", "beta")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    response = httpx.post(
        f"{configured.rest_url}/v1/models/tiny/labels/stable:predict",
        json={"instances": [np.zeros((SIZE, SIZE, 3), int).tolist()]},
        timeout=10,
    )
    assert response.status_code == 200, response.text


@pytest.mark.integration
def test_only_configured_models_are_served_under_their_config_names(configured: ModelServerHandle) -> None:
    assert _predict(configured, "detector") == 1
    with pytest.raises(grpc.RpcError) as info:
        _predict(configured, "dyn")  # a folder of the root, but not in the config
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.integration
def test_status_with_a_label_lists_every_version_as_tfs_does(configured: ModelServerHandle) -> None:
    with grpc.insecure_channel(configured.grpc_target) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        req = get_model_status_pb2.GetModelStatusRequest()
        req.model_spec.name = "tiny"
        req.model_spec.version_label = "stable"
        versions = [s.version for s in stub.GetModelStatus(req, timeout=10).model_version_status]
    assert versions == [2, 1]


def test_a_polled_config_is_re_read_when_it_changes_and_kept_when_it_breaks(tmp_path: Path) -> None:
    text = 'model_config_list { config { name: "m" base_path: "/m" model_platform: "tensorflow" } }'
    path = write(tmp_path, text)
    configured = ConfiguredModels(path, DEFAULT, poll_seconds=0.01)
    assert [s.name for s in configured()] == ["m"]
    path.write_text(text.replace('"m"', '"n"', 1))
    time.sleep(0.02)
    assert [s.name for s in configured()] == ["n"]
    path.write_text("model_config_list { nonsense }")
    time.sleep(0.02)
    assert [s.name for s in configured()] == ["n"]  # the last good config stays


def test_a_config_read_once_is_not_re_read(tmp_path: Path) -> None:
    text = 'model_config_list { config { name: "m" base_path: "/m" model_platform: "tensorflow" } }'
    path = write(tmp_path, text)
    configured = ConfiguredModels(path, DEFAULT)
    path.write_text(text.replace('"m"', '"n"', 1))
    assert [s.name for s in configured()] == ["m"]
