"""The model server for the TensorFlow-side model server tests: tiny models and TF1 graph-mode exports built in this
process, one server (a real subprocess on free ports) over all of them, talked to with the official
``tensorflow-serving-api`` stubs. Tests that reload or reconfigure start their own over ``model_root``."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from tests.support.modelserver import ModelServerHandle, running_model_server
from tests.support.tiny_models import build_detector, build_tf1
from tests.tf.modelserver.tf1_models import build_classifier, build_half_plus, build_ranks

SIZE = 8
TINY_SCALES = {1: 0.5, 2: 1.0}
TF1_MODELS = (
    "half_plus_three",
    "half_plus_two",
    "ranks",
    "classifier",
)  # scores differ per version, so each version's answers are recognisable


def populate_repository(root: Path) -> None:
    """The session server's models (see each test module for what it checks)."""
    for version, scale in TINY_SCALES.items():
        # The first labels contract (no input): the server must still run a signature without inputs.
        build_detector(root / "tiny" / str(version), size=SIZE, score_scale=scale, echo=True, labels="legacy")
    build_detector(root / "warm" / "1", size=SIZE, warmup=3, count_calls=True)
    build_detector(root / "dyn" / "1", size=SIZE)
    build_tf1(root / "odapi" / "1", score_scale=2.0)
    # A version whose saved_model.pb is garbage fails to load; one whose warmup file is garbage fails warmup.
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "saved_model.pb").write_bytes(b"\x00not a saved model")
    build_detector(root / "badwarm" / "1", size=SIZE)
    (root / "badwarm" / "1" / "assets.extra").mkdir()
    (root / "badwarm" / "1" / "assets.extra" / "tf_serving_warmup_requests").write_bytes(b"garbage, not TFRecord")
    # Things that are not versions or models.
    (root / ".tmp-upload").mkdir()
    (root / "tiny" / "examples").mkdir()
    (root / "tiny" / "label_map.pbtxt").write_text("item { id: 1 name: 'circle' }\n")
    (root / "tiny" / "7").mkdir()  # an integer folder without saved_model.pb is not a version yet


@pytest.fixture(scope="session")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session server's repository: ``populate_repository`` and ``populate_tf1_repository`` together."""
    base = tmp_path_factory.mktemp("repository")
    root, scratch = base / "models", base / "scratch"
    root.mkdir()
    scratch.mkdir()
    populate_repository(root)
    populate_tf1_repository(root, scratch)
    return root


@pytest.fixture(scope="session")
def server(model_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServerHandle]:
    """The model server over ``model_root``, with every loadable model AVAILABLE (the TF1 exports too)."""
    with running_model_server(
        model_root,
        log_dir=tmp_path_factory.mktemp("logs"),
        poll_seconds=0.3,
        wait_for=["tiny", "warm", "dyn", "odapi", *TF1_MODELS],
    ) as handle:
        handle.wait_available("tiny", 1)
        yield handle


@pytest.fixture(scope="session")
def channel(server: ModelServerHandle) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield channel


@pytest.fixture(scope="session")
def prediction(channel: grpc.Channel) -> prediction_service_pb2_grpc.PredictionServiceStub:
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="session")
def models(channel: grpc.Channel) -> model_service_pb2_grpc.ModelServiceStub:
    return model_service_pb2_grpc.ModelServiceStub(channel)


def copy_version(source: Path, target: Path) -> None:
    """Publish a version as publishers must: copy aside, then rename into place."""
    tmp = target.parent / f".tmp-{target.name}"
    shutil.copytree(source, tmp)
    tmp.rename(target)


def populate_tf1_repository(root: Path, scratch: Path) -> None:
    """TF1 graph-mode exports (see ``tf1_models``); the assets' sources are deleted, so only the copies the
    SavedModel carries (fed at load time) can be read."""
    build_half_plus(root / "half_plus_three" / "123", offset=3.0, saved_model_config=b"", tmp=scratch)
    # As TF 1.x wrote it: legacy_init_op and the saved_model_assets collection; a non-empty saved_model_config.pb.
    build_half_plus(
        root / "half_plus_two" / "1", offset=2.0, legacy=True, saved_model_config=b"\x0a\x02\x08\x01", tmp=scratch
    )
    build_ranks(root / "ranks" / "1")
    build_classifier(root / "classifier" / "1")
    for source in scratch.iterdir():
        source.unlink()


@pytest.fixture(scope="session")
def tf1_server(server: ModelServerHandle) -> ModelServerHandle:
    """The session server, for the tests of its TF1 graph-mode exports (``TF1_MODELS``)."""
    return server


@pytest.fixture(scope="session")
def tf1_channel(tf1_server: ModelServerHandle) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(tf1_server.grpc_target) as channel:
        yield channel
