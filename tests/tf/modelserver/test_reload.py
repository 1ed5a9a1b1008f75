"""``models.config`` changes take effect without a restart, as on TFS: re-read every
``--model_config_file_poll_wait_seconds``, or sent with ``ModelService.HandleReloadConfigRequest``; a label moved
under load fails no request (it moves once its new version is AVAILABLE)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import (
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from tests.support.modelserver import ModelServerHandle, running_model_server
from tests.tf.modelserver.conftest import SIZE

pytestmark = pytest.mark.integration

CONFIG = """
model_config_list {
  config {
    name: "tiny"
    base_path: "%(base)s"
    model_platform: "tensorflow"
    model_version_policy { specific { %(versions)s } }
    version_labels { key: "stable" value: %(stable)d }
  }
}
"""


def config_text(base: Path, versions: list[int], stable: int) -> str:
    listed = " ".join(f"versions: {v}" for v in versions)
    return CONFIG % {"base": base, "versions": listed, "stable": stable}


@pytest.fixture(scope="module")
def reloading(model_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ModelServerHandle, Path]]:
    """A server whose models.config (the second item) lists only tiny's version 1, labelled stable."""
    folder = tmp_path_factory.mktemp("reload")
    config = folder / "models.config"
    config.write_text(config_text(model_root / "tiny", [1], 1))
    with running_model_server(
        model_root,
        log_dir=folder,
        config_file=config,
        env={"SPOTTER_MODEL_CONFIG_FILE_POLL_WAIT_SECONDS": "0.5"},
        wait_for=["tiny"],
        name="reloading",
    ) as handle:
        yield handle, config


def predict_version(stub: prediction_service_pb2_grpc.PredictionServiceStub, label: str) -> int:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "tiny"
    request.model_spec.version_label = label
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros((1, SIZE, SIZE, 3), np.uint8)))
    return int(stub.Predict(request, timeout=10).model_spec.version.value)


class Load:
    """A few threads calling Predict with a label until stopped; counts answers per version and failures."""

    def __init__(self, target: str, label: str, threads: int = 3) -> None:
        self.versions: Counter[int] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._channel = grpc.insecure_channel(target)
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._threads = [threading.Thread(target=self._run, args=(label,)) for _ in range(threads)]

    def _run(self, label: str) -> None:
        while not self._stop.is_set():
            try:
                version = predict_version(self._stub, label)
            except grpc.RpcError as exc:
                with self._lock:
                    self.failures.append(f"{exc.code().name}: {exc.details()}")
            else:
                with self._lock:
                    self.versions[version] += 1

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)
        self._channel.close()

    def wait_for(self, version: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.versions[version] < 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert self.versions[version] >= 20, (self.versions, self.failures[:3])


def test_a_label_moved_in_the_file_moves_without_a_failed_request(
    reloading: tuple[ModelServerHandle, Path], model_root: Path
) -> None:
    server, config = reloading
    with Load(server.grpc_target, "stable") as load:
        load.wait_for(1)
        # The rollout step: list version 2 and point the label at it in one edit. Version 2 has to load first.
        config.write_text(config_text(model_root / "tiny", [1, 2], 2))
        load.wait_for(2)
    assert load.failures == []
    assert load.versions[1] >= 20
    assert server.wait_available("tiny", 2) == 2


def reload(server: ModelServerHandle, text: str) -> tuple[grpc.StatusCode, model_management_pb2.ReloadConfigResponse]:
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(text, request.config)
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        response, call = stub.HandleReloadConfigRequest.with_call(request, timeout=120)
        return call.code(), response


def test_handle_reload_config_request_moves_a_label(
    reloading: tuple[ModelServerHandle, Path], model_root: Path
) -> None:
    server, _ = reloading
    with Load(server.grpc_target, "stable") as load:
        code, response = reload(server, config_text(model_root / "tiny", [1, 2], 1))
        assert (code, response.status.error_code) == (grpc.StatusCode.OK, 0)
        load.wait_for(1)
    assert load.failures == []
    # Once the reload has answered, "stable" is version 1.
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        assert {predict_version(stub, "stable") for _ in range(10)} == {1}


def test_a_reload_to_a_missing_version_keeps_the_label(
    reloading: tuple[ModelServerHandle, Path], model_root: Path
) -> None:
    server, _ = reloading
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(config_text(model_root / "tiny", [1, 2, 7], 7), request.config)
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.HandleReloadConfigRequest(request, timeout=120)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "Request to assign label to version 7 of model tiny" in info.value.details()
        prediction = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        assert predict_version(prediction, "stable") == 1  # still served by its previous version

        custom = model_management_pb2.ReloadConfigRequest(
            config=model_server_config_pb2.ModelServerConfig(custom_model_config={})
        )
        with pytest.raises(grpc.RpcError) as info:
            stub.HandleReloadConfigRequest(custom, timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "only supports reloading model_config_list configs" in info.value.details()
