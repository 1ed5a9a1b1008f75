"""Tiny SavedModels for tests: fast to build and load, deterministic, with Spotter's export signatures.

Importing this module is TensorFlow-free; the ``build_*`` functions import TensorFlow when called, so TF-free test
processes build models in a subprocess::

    build_models([("detector", root / "tiny" / "1", {"size": 16})])          # from any test process
    python -m tests.support.tiny_models detector models/tiny/1 size=16      # by hand

Kinds:
- ``detector``: ``serving_default`` (``images`` uint8 ``[-1, S, S, 3]`` -> ``detection_boxes`` ``[-1, N, 4]``,
  ``detection_scores`` / ``detection_classes`` ``[-1, N]``, ``num_detections`` ``[-1]``), ``detect_encoded``
  (``encoded`` string ``[-1]``, same outputs) and ``labels``. Box ``i`` is the fixed box ``BOXES[i]`` with class
  ``i + 1``; its score is ``score_scale * mean(image) / 255 / (i + 1)``, so tests can predict every output.
- ``classifier``: ``serving_default`` (``images`` -> ``probabilities`` ``[-1, K]``) and ``labels``.

``labels`` comes in the form of the ``labels=`` option: ``"batched"`` (the contract, default: input ``batch`` int32
``[-1]``, outputs ``ids`` int32 ``[-1, K]`` and ``names`` string ``[-1, K]``, one row per element, which TFS's
batching accepts), ``"legacy"`` (the first contract: no input, ``ids`` ``[K]`` and ``names`` ``[K]``), ``"broken"``
(takes ``batch`` but every call fails, as a batching TFS fails a no-input call) or ``"none"`` (no ``labels``).
- ``tf1``: a TF1 session-style SavedModel (``tf.compat.v1`` graph, ``SavedModelBuilder``) like a TF Object Detection
  API export: input ``inputs`` uint8 ``[-1, -1, -1, 3]``, the four detection outputs, no ``labels`` signature.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BOXES = ((0.1, 0.1, 0.5, 0.5), (0.2, 0.3, 0.6, 0.9), (0.0, 0.0, 1.0, 1.0))
LABELS = ("circle", "square", "triangle")
REPO = Path(__file__).resolve().parent.parent.parent


def expected_scores(images: Any, score_scale: float = 1.0) -> Any:
    """The ``detection_scores`` the detector answers for a uint8 batch (numpy in, numpy out)."""
    import numpy as np

    means = np.asarray(images, dtype=np.float64).reshape(len(images), -1).mean(axis=1) / 255.0
    return np.stack([score_scale * means / (i + 1) for i in range(len(BOXES))], axis=1).astype(np.float32)


def build_detector(
    path: Path,
    *,
    size: int = 8,
    score_scale: float = 1.0,
    warmup: int = 0,
    count_calls: bool = False,
    echo: bool = False,
    labels: str = "batched",
    classes: int = len(BOXES),
    box_shift: float = 0.0,
    fail: bool = False,
) -> Path:
    """Export the tiny detector to ``path`` (a version folder).

    Args:
        path: the version folder to create (written aside, then renamed into place).
        size: the input size S.
        score_scale: multiplies every score, so two versions answer differently.
        warmup: how many ``PredictionLog`` records to write to ``assets.extra/tf_serving_warmup_requests``.
        count_calls: keep a variable counting ``serving_default`` calls, read by a ``calls`` signature
            (``count`` int64 ``[1]``): proves warmup ran before the version was served.
        echo: add an ``echo`` signature (``text`` string ``[-1]`` -> ``text`` and ``text_bytes``) for string tests.
        labels: the form of the ``labels`` signature (see the module's text).
        classes: how many of ``BOXES`` (and labels) it knows: fewer makes a worse version (shadow tests).
        box_shift: moves every box right by this share of the image (clipped), another way to be worse.
        fail: every ``serving_default`` call fails (a shadow version that errors).
    """
    import tensorflow as tf

    n = classes
    shifted = [(y0, min(x0 + box_shift, 1.0), y1, min(x1 + box_shift, 1.0)) for y0, x0, y1, x1 in BOXES[:n]]

    class Detector(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = tf.Variable(score_scale, dtype=tf.float32, trainable=False)
            self.calls = tf.Variable(0, dtype=tf.int64, trainable=False) if count_calls else None

        def head(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
            batch = tf.shape(images)[0]
            mean = tf.reduce_mean(tf.reshape(images, [batch, -1]), axis=1) / 255.0
            scores = tf.stack([self.scale * mean / float(i + 1) for i in range(n)], axis=1)
            boxes = tf.tile(tf.constant([shifted], tf.float32), [batch, 1, 1])
            classes = tf.tile(tf.constant([[float(i + 1) for i in range(n)]], tf.float32), [batch, 1])
            return {
                "detection_boxes": boxes,
                "detection_scores": scores,
                "detection_classes": classes,
                "num_detections": tf.fill([batch], float(n)),
            }

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8, name="images")])
        def serve(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
            if self.calls is not None:
                self.calls.assign_add(1)
            if fail:
                tf.debugging.assert_negative(tf.shape(images)[0], message="serving_default: this version always fails")
            return self.head(tf.cast(images, tf.float32))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="encoded")])
        def detect_encoded(self, encoded: tf.Tensor) -> dict[str, tf.Tensor]:
            def decode(data: tf.Tensor) -> tf.Tensor:
                image = tf.io.decode_image(data, channels=3, expand_animations=False)
                image.set_shape([None, None, 3])
                return tf.image.resize(tf.cast(image, tf.float32), [size, size])

            spec = tf.TensorSpec([size, size, 3], tf.float32)
            return self.head(tf.map_fn(decode, encoded, fn_output_signature=spec))

    module = Detector()
    signatures: dict[str, Any] = {
        "serving_default": module.serve.get_concrete_function(),
        "detect_encoded": module.detect_encoded.get_concrete_function(),
    }
    _add_labels(module, signatures, LABELS[:n], labels)
    # Optional signatures are attached only when wanted: saving traces every tf.function the module holds.
    if count_calls:
        calls = module.calls
        module.read_calls = tf.function(lambda: {"count": tf.reshape(calls.read_value(), [1])}, input_signature=[])
        signatures["calls"] = module.read_calls.get_concrete_function()
    if echo:
        module.echo = tf.function(
            lambda text: {"text": tf.identity(text), "text_bytes": tf.identity(text)},
            input_signature=[tf.TensorSpec([None], tf.string, name="text")],
        )
        signatures["echo"] = module.echo.get_concrete_function()
    return _save_aside(path, lambda tmp: tf.saved_model.save(module, str(tmp), signatures=signatures), warmup, size)


def build_classifier(path: Path, *, size: int = 8, num_classes: int = 3, labels: str = "batched") -> Path:
    """Export a tiny classifier: ``probabilities[k]`` is the softmax of ``(k + 1) * mean(image) / 255``."""
    import tensorflow as tf

    class Classifier(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8, name="images")])
        def serve(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
            batch = tf.shape(images)[0]
            mean = tf.reduce_mean(tf.reshape(tf.cast(images, tf.float32), [batch, -1]), axis=1) / 255.0
            logits = tf.stack([mean * float(k + 1) for k in range(num_classes)], axis=1)
            return {"probabilities": tf.nn.softmax(logits)}

    module = Classifier()
    signatures: dict[str, Any] = {"serving_default": module.serve.get_concrete_function()}
    _add_labels(module, signatures, [f"class{k + 1}" for k in range(num_classes)], labels)
    return _save_aside(path, lambda tmp: tf.saved_model.save(module, str(tmp), signatures=signatures), 0, size)


def _add_labels(module: Any, signatures: dict[str, Any], names: Sequence[str], form: str) -> None:
    """Attach a ``labels`` signature of the given form (see the module's text) to ``module``."""
    import tensorflow as tf

    k = len(names)
    if form == "none":
        return
    if form == "legacy":
        module.labels = tf.function(
            lambda: {"ids": tf.range(1, k + 1, dtype=tf.int32), "names": tf.constant(list(names))},
            input_signature=[],
        )
    elif form in ("batched", "broken"):

        def rows(batch: tf.Tensor) -> dict[str, tf.Tensor]:
            if form == "broken":
                tf.debugging.assert_negative(batch, message="labels: this signature always fails")
            multiples = tf.stack([tf.shape(batch)[0], 1])
            ids = tf.tile(tf.range(1, k + 1, dtype=tf.int32)[None, :], multiples)
            text = tf.tile(tf.constant(list(names))[None, :], multiples)
            return {"ids": tf.ensure_shape(ids, [None, k]), "names": tf.ensure_shape(text, [None, k])}

        module.labels = tf.function(rows, input_signature=[tf.TensorSpec([None], tf.int32, name="batch")])
    else:
        raise ValueError(f"unknown labels form {form!r}: batched, legacy, broken or none")
    signatures["labels"] = module.labels.get_concrete_function()


def build_tf1(path: Path, *, score_scale: float = 1.0) -> Path:
    """Export a TF1 session-style SavedModel shaped like a TF Object Detection API export (see the module doc)."""
    import tensorflow as tf

    v1 = tf.compat.v1
    n = len(BOXES)

    def save(tmp: Path) -> None:
        graph = tf.Graph()
        with graph.as_default():
            images = v1.placeholder(tf.uint8, [None, None, None, 3], name="image_tensor")
            scale = v1.get_variable("scale", initializer=tf.constant(score_scale, tf.float32))
            batch = tf.shape(images)[0]
            mean = tf.reduce_mean(tf.reshape(tf.cast(images, tf.float32), [batch, -1]), axis=1) / 255.0
            scores = tf.stack([scale * mean / float(i + 1) for i in range(n)], axis=1, name="detection_scores")
            boxes = tf.tile(tf.constant([BOXES], tf.float32), [batch, 1, 1], name="detection_boxes")
            classes = tf.tile(tf.constant([[float(i + 1) for i in range(n)]]), [batch, 1], name="detection_classes")
            num = tf.fill([batch], float(n), name="num_detections")
            info = v1.saved_model.utils.build_tensor_info
            signature = v1.saved_model.signature_def_utils.build_signature_def(
                inputs={"inputs": info(images)},
                outputs={
                    "detection_boxes": info(boxes),
                    "detection_scores": info(scores),
                    "detection_classes": info(classes),
                    "num_detections": info(num),
                },
                method_name=v1.saved_model.signature_constants.PREDICT_METHOD_NAME,
            )
            with v1.Session(graph=graph) as session:
                session.run(v1.global_variables_initializer())
                builder = v1.saved_model.builder.SavedModelBuilder(str(tmp))
                builder.add_meta_graph_and_variables(
                    session, [v1.saved_model.tag_constants.SERVING], signature_def_map={"serving_default": signature}
                )
                builder.save()

    return _save_aside(path, save, 0, 0)


def write_warmup(version_dir: Path, records: int, *, size: int, signature: str = "serving_default") -> Path:
    """Write ``records`` TFS warmup records (``PredictionLog`` in TFRecord framing) for the detector's input."""
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    folder = version_dir / "assets.extra"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "tf_serving_warmup_requests"
    with tf.io.TFRecordWriter(str(target)) as writer:
        for i in range(records):
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name="warmup", signature_name=signature),
            )
            image = np.full((1, size, size, 3), i % 256, np.uint8)
            request.inputs["images"].CopyFrom(tf.make_tensor_proto(image))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return target


def _save_aside(path: Path, save: Any, warmup: int, size: int) -> Path:
    """Write the version beside its final place and rename it in, as publishers must."""
    tmp = path.parent / f".tmp-{path.name}"
    path.parent.mkdir(parents=True, exist_ok=True)
    save(tmp)
    if warmup:
        write_warmup(tmp, warmup, size=size)
    tmp.rename(path)
    return path


BUILDERS = {"detector": build_detector, "classifier": build_classifier, "tf1": build_tf1}


def build_models(specs: Sequence[tuple[str, Path, dict[str, Any]]], *, timeout: float = 300.0) -> None:
    """Build models in one subprocess (so the caller's process never imports TensorFlow).

    ``specs`` are ``(kind, version_dir, options)``, e.g. ``("detector", root / "tiny" / "1", {"size": 16})``.
    """
    args: list[str] = []
    for kind, path, options in specs:
        args += ["--", kind, str(path), *(f"{key}={value}" for key, value in options.items())]
    result = subprocess.run(
        [sys.executable, "-m", "tests.support.tiny_models", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**_quiet_env()},
    )
    if result.returncode != 0:
        raise RuntimeError(f"building tiny models failed ({result.returncode}):\n{result.stderr[-4000:]}")


def _quiet_env() -> dict[str, str]:
    import os

    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _parse_value(text: str) -> Any:
    if text in ("true", "True"):
        return True
    if text in ("false", "False"):
        return False
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def main(argv: Sequence[str]) -> None:
    """``python -m tests.support.tiny_models [--] KIND PATH [key=value ...] [-- KIND PATH ...]``."""
    groups: list[list[str]] = [[]]
    for arg in argv:
        if arg == "--":
            groups.append([])
        else:
            groups[-1].append(arg)
    for group in (g for g in groups if g):
        kind, path, *options = group
        kwargs = dict(option.split("=", 1) for option in options)
        BUILDERS[kind](Path(path), **{key: _parse_value(value) for key, value in kwargs.items()})


if __name__ == "__main__":
    main(sys.argv[1:])
