"""The project's exports load and answer the way TensorFlow Serving loads them.

TFS imports the ``serve`` meta graph into a fresh graph, restores the variables with the saver's restore op and runs
the init op (what ``tf.compat.v1.saved_model.loader.load`` does); a Keras 3 model exported carelessly loads there but
answers every request ``Could not find variable ...`` (keras-team/keras#19274). Each signature must answer exactly as
``tf.saved_model.load``'s object-graph restore does, on that path and through the model server in strict mode.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from services.modelserver.bundle import SessionBundle
from services.modelserver.warmup import load_servable
from services.training.classifier import ClassifierConfig, build_classifier, export_classifier
from services.training.detector import DetectorConfig, build_detector
from services.training.export import export_detector

CLASSES = ("circle", "square", "triangle")
Feeds = dict[str, dict[str, np.ndarray]]


def _image(fmt: str, h: int, w: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def _canvases(size: int) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (3, size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Feeds]:
    config = DetectorConfig(classes=CLASSES, input_size=64, max_detections=10)
    tf.keras.utils.set_random_seed(5)
    folder = export_detector(
        build_detector(config), config, tmp_path_factory.mktemp("tfs") / "detector", model_name="d", score_floor=0.0
    )
    encoded = np.array([_image("JPEG", 50, 90, 1), _image("PNG", 80, 40, 2)], dtype=object)
    feeds = {
        "serving_default": {"images": _canvases(64)},
        "detect_encoded": {"encoded": encoded},
        "labels": {"batch": np.zeros([2], np.int32)},
    }
    return folder, feeds


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Feeds]:
    config = ClassifierConfig(classes=CLASSES, input_size=32)
    tf.keras.utils.set_random_seed(6)
    model = build_classifier(config, pretrained=False)
    folder = export_classifier(model, config, tmp_path_factory.mktemp("tfs") / "classifier", model_name="c")
    feeds = {"serving_default": {"images": _canvases(32)}, "labels": {"batch": np.zeros([2], np.int32)}}
    return folder, feeds


@pytest.fixture(params=["detector", "classifier"])
def export(request: pytest.FixtureRequest) -> tuple[Path, Feeds]:
    found: tuple[Path, Feeds] = request.getfixturevalue(request.param)
    return found


def _object_graph(folder: Path, feeds: Feeds) -> dict[str, dict[str, np.ndarray]]:
    loaded = tf.saved_model.load(str(folder))
    return {
        key: {k: v.numpy() for k, v in loaded.signatures[key](**{n: tf.constant(x) for n, x in f.items()}).items()}
        for key, f in feeds.items()
    }


def _tfs_loader(folder: Path, feeds: Feeds) -> tuple[Any, dict[str, dict[str, np.ndarray]]]:
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(folder))
        found = {}
        for key, inputs in feeds.items():
            signature = meta_graph.signature_def[key]
            aliases = sorted(signature.outputs)
            values = session.run(
                [signature.outputs[a].name for a in aliases],
                {signature.inputs[n].name: x for n, x in inputs.items()},
            )
            found[key] = dict(zip(aliases, values, strict=True))
    return meta_graph, found


def _assert_same(expected: dict[str, dict[str, np.ndarray]], got: dict[str, dict[str, np.ndarray]]) -> None:
    assert got.keys() == expected.keys()
    for key, outputs in expected.items():
        assert got[key].keys() == outputs.keys(), key
        for alias, value in outputs.items():
            np.testing.assert_array_equal(got[key][alias], value, err_msg=f"{key}/{alias}")


def test_signatures_answer_on_tfs_loading_as_on_the_object_graph(export: tuple[Path, Feeds]) -> None:
    folder, feeds = export
    expected = _object_graph(folder, feeds)
    meta_graph, got = _tfs_loader(folder, feeds)
    _assert_same(expected, got)
    # The contract's signatures and nothing else; every input has a dynamic batch dimension.
    assert set(meta_graph.signature_def) - {"__saved_model_init_op"} == set(feeds)
    for key, inputs in feeds.items():
        signature = meta_graph.signature_def[key]
        assert set(signature.inputs) == set(inputs), key
        for info in signature.inputs.values():
            assert info.tensor_shape.dim[0].size == -1, key
    if "detect_encoded" in feeds:  # a detector: real detections, not all padding
        assert expected["serving_default"]["num_detections"].min() > 0


def test_the_model_server_serves_them_in_strict_mode(export: tuple[Path, Feeds]) -> None:
    folder, feeds = export
    expected = _object_graph(folder, feeds)
    servable = load_servable("m", 1, folder, strict_tfs_loading=True)
    try:
        assert isinstance(servable.bundle, SessionBundle)
        assert servable.bundle.unrestored_variables() == []
        got = {
            key: {alias: value for alias, (_, value) in servable.run(servable.signature(key), inputs).items()}
            for key, inputs in feeds.items()
        }
    finally:
        servable.bundle.close()
    _assert_same(expected, got)
