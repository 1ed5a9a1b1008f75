"""Loading takes TFS's path (a session restored by the SavedModel's saver) for TF1 and TF2 exports; a TF2 export
that path can't run (a Keras 3 model saved inside a ``tf.Module``) is caught at load time, not at the first
request: refused (``strict_tfs_loading``, the default), or served through ``tf.saved_model.load`` with a warning."""

from __future__ import annotations

from pathlib import Path

import grpc
import keras
import numpy as np
import pytest
import tensorflow as tf

from services.modelserver.bundle import ObjectGraphBundle, SessionBundle
from services.modelserver.status import ServingError
from services.modelserver.warmup import load_servable
from tests.support.tiny_models import build_detector


def _keras_in_a_module(path: Path) -> np.ndarray:
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, kernel_initializer="ones", name="dense")])

    class Wrapper(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": self.model(x)}

    wrapper = Wrapper()
    tf.saved_model.save(wrapper, str(path), signatures={"serving_default": wrapper.serve})
    return np.asarray(model(np.eye(3, dtype=np.float32)))


def test_a_tf2_export_runs_in_a_session_restored_by_its_saver(tmp_path: Path) -> None:
    build_detector(tmp_path / "1", size=8)
    servable = load_servable("tiny", 1, tmp_path / "1")
    assert isinstance(servable.bundle, SessionBundle)
    outputs = servable.run(servable.signature(""), {"images": np.full((2, 8, 8, 3), 255, np.uint8)})
    assert outputs["detection_scores"][1].shape == (2, 3)


def test_an_export_tfs_could_not_run_is_caught_at_load(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    expected = _keras_in_a_module(tmp_path / "1")
    with pytest.raises(ServingError) as info:
        load_servable("keras", 1, tmp_path / "1")  # strict by default
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "not restored by its saver" in info.value.message

    with caplog.at_level("WARNING"):
        servable = load_servable("keras", 1, tmp_path / "1", strict_tfs_loading=False)
    assert isinstance(servable.bundle, ObjectGraphBundle)
    assert "TensorFlow Serving would fail every request" in caplog.text
    outputs = servable.run(servable.signature(""), {"x": np.eye(3, dtype=np.float32)})
    np.testing.assert_allclose(outputs["y"][1], expected)
