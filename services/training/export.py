"""Export a detector as a SavedModel with the project's signatures and warmup records, and publish it atomically.

Signatures (docs/architecture.md): ``serving_default`` (uint8 canvases), ``detect_encoded`` (JPEG/PNG bytes, decoded
and letterboxed in the graph, boxes normalised to the original image) and ``labels``. The batch dimension is dynamic.

``labels`` takes an input and answers one row per element (``batch`` int32 ``[-1]`` -> ``ids`` int32 ``[-1, K]``,
``names`` string ``[-1, K]``, every row the same), because TensorFlow Serving with ``--enable_batching`` wraps every
signature in its batcher, which refuses a call without an input tensor and splits every output along dimension 0.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import keras
import tensorflow as tf

from services.files import fsync_dir, fsync_tree, replace_dir, scratch_dir
from services.training.detector import DetectorConfig, build_detector
from services.training.letterbox import boxes_from_canvas, letterbox
from services.training.postprocess import DEFAULT_SCORE_FLOOR, decode_detections

log = logging.getLogger(__name__)

WARMUP_FILE = "tf_serving_warmup_requests"
METADATA_FILE = "spotter.json"
"""Beside the warmup records in ``assets.extra/``: the detector config and whatever the exporter adds."""

DEFAULT_WARMUP_BATCHES: tuple[int, ...] = (1, 8, 32)


LABELS_INPUT = tf.TensorSpec([None], tf.int32, name="batch")
"""The ``labels`` signature's input: any int32 values, one answer row per element (send ``[0]``)."""


def label_rows(batch: tf.Tensor, classes: Sequence[str]) -> dict[str, tf.Tensor]:
    """The ``labels`` signature's outputs: ``ids`` int32 ``[n, K]`` (1..K) and ``names`` string ``[n, K]``, one
    identical row per element of ``batch``; shared by every exported kind (detectors, classifiers)."""
    k = len(classes)
    multiples = tf.stack([tf.shape(batch)[0], 1])
    ids = tf.tile(tf.range(1, k + 1, dtype=tf.int32)[None, :], multiples)
    names = tf.tile(tf.constant(list(classes), tf.string)[None, :], multiples)
    # K is static in the signature (GetModelMetadata shows [-1, K]).
    return {"ids": tf.ensure_shape(ids, [None, k]), "names": tf.ensure_shape(names, [None, k])}


def saved_variables(model: keras.Model) -> list[tf.Variable]:
    """The ``tf.Variable`` behind each of ``model``'s weights, in ``model.weights`` order: what an exported module
    tracks, so that its checkpoint holds exactly the variables its functions capture.

    Tracking the Keras 3 variables themselves makes ``tf.saved_model.save`` write a copy of each as the checkpointed
    variable while the functions keep reading the original's handle: ``tf.saved_model.load`` copes, but TensorFlow
    Serving (whose saver restores only the copies) fails every request with ``Could not find variable``
    (keras-team/keras#19274, tensorflow/serving#2226).
    """
    found = [w.value for w in model.weights]
    wrong = [w.path for w, v in zip(model.weights, found, strict=True) if not isinstance(v, tf.Variable)]
    if wrong:
        raise TypeError(f"weights not backed by a tf.Variable (mixed precision?): {', '.join(wrong)}")
    return found


class DetectorModule(tf.Module):  # type: ignore[misc]
    """The exported graph: a Keras detector plus decoding, letterboxing and the label map.

    Only the model's variables are tracked, not the Keras model itself (Keras would save a default signature of its
    own, a third copy of the graph), and :meth:`signatures` builds the three concrete functions once each.
    """

    def __init__(self, model: keras.Model, config: DetectorConfig, *, score_floor: float = DEFAULT_SCORE_FLOOR) -> None:
        super().__init__(name="detector")
        # A fixed-size twin of the (free-size) training model: static shapes trace cleanly and serve faster.
        twin = build_detector(config, fixed_size=True, pretrained=False)
        twin.set_weights(model.get_weights())
        self.weights = saved_variables(twin)  # tracked: what the SavedModel's checkpoint holds
        self._parts = SimpleNamespace(model=twin)  # not tracked (a namespace is not a trackable container)
        self.config = config
        self.score_floor = score_floor

    def signatures(self) -> dict[str, Any]:
        """``serving_default``, ``detect_encoded`` and ``labels`` as concrete functions."""
        size = self.config.input_size
        serve = tf.function(
            self._serve, input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8, name="images")]
        )
        self._serve_fn = serve
        detect = tf.function(self._detect_encoded, input_signature=[tf.TensorSpec([None], tf.string, name="encoded")])
        labels = tf.function(self._labels, input_signature=[LABELS_INPUT])
        return {
            "serving_default": serve.get_concrete_function(),
            "detect_encoded": detect.get_concrete_function(),
            "labels": labels.get_concrete_function(),
        }

    def _serve(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        raw = self._parts.model(tf.cast(images, tf.float32), training=False)
        return decode_detections(
            raw,
            num_classes=self.config.num_classes,
            stride=self.config.stride,
            max_detections=self.config.max_detections,
            score_floor=self.score_floor,
            calibration=self.config.calibration,
        )

    def _detect_encoded(self, encoded: tf.Tensor) -> dict[str, tf.Tensor]:
        size = self.config.input_size

        def one(data: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            image = tf.io.decode_image(data, channels=3, expand_animations=False)
            shape = tf.shape(image)
            canvas, scale = letterbox(image, size)
            return canvas, tf.stack([tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)]), scale

        canvases, sizes, scales = tf.map_fn(
            one,
            encoded,
            fn_output_signature=(
                tf.TensorSpec([size, size, 3], tf.uint8),
                tf.TensorSpec([2], tf.float32),
                tf.TensorSpec([], tf.float32),
            ),
        )
        out: dict[str, tf.Tensor] = self._serve_fn(canvases)  # a call of the serving function, not a copy of it
        boxes = boxes_from_canvas(out["detection_boxes"], sizes[:, 0, None], sizes[:, 1, None], scales[:, None], size)
        # Padding rows stay zeros, as in serving_default.
        valid = out["detection_scores"] > 0
        out["detection_boxes"] = tf.where(valid[..., None], boxes, 0.0)
        return out

    def _labels(self, batch: tf.Tensor) -> dict[str, tf.Tensor]:
        return label_rows(batch, self.config.classes)


def _grey_images_proto(size: int, batch: int) -> Any:
    """A uint8 ``[batch, size, size, 3]`` TensorProto of mid-grey canvases, stored as one value.

    TensorFlow fills a tensor from a short value list by repeating the last value (``Tensor::FromProto``,
    ``tf.make_ndarray``), so a batch of 32 canvases costs a few bytes instead of 10 MB in the model folder. Warmup
    needs the shapes and the code paths, not realistic pixels.
    """
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

    dims = [tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in (batch, size, size, 3)]
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_UINT8, tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=dims), int_val=[114]
    )


def write_warmup_requests(
    path: Path, *, model_name: str, size: int, batches: Sequence[int] = DEFAULT_WARMUP_BATCHES
) -> None:
    """Write TFS warmup records: one ``serving_default`` ``PredictRequest`` per batch size, as ``PredictionLog``s in
    TFRecord framing (what TFS replays from ``assets.extra/tf_serving_warmup_requests`` before serving)."""
    write_predict_logs(path, model_name=model_name, inputs=(_grey_images_proto(size, batch) for batch in batches))


def write_predict_logs(path: Path, *, model_name: str, inputs: Iterable[Any], input_name: str = "images") -> int:
    """Write one ``serving_default`` ``PredictRequest`` per TensorProto of ``inputs`` (the ``input_name`` input) as
    TFS warmup records: ``PredictionLog``s in TFRecord framing, the format real TFS replays too. Returns how many."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with tf.io.TFRecordWriter(str(path)) as writer:
        for tensor in inputs:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = "serving_default"
            request.inputs[input_name].CopyFrom(tensor)
            record = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(record.SerializeToString())
            written += 1
    return written


def export_detector(
    model: keras.Model,
    config: DetectorConfig,
    export_dir: Path,
    *,
    model_name: str,
    score_floor: float = DEFAULT_SCORE_FLOOR,
    warmup_batches: Sequence[int] = DEFAULT_WARMUP_BATCHES,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write the SavedModel, its warmup records and ``assets.extra/spotter.json`` to ``export_dir`` (which must not
    exist). Use :func:`publish` (or :func:`export_and_publish`) to make it a served version."""
    if export_dir.exists():
        raise FileExistsError(f"export folder already exists: {export_dir}")
    module = DetectorModule(model, config, score_floor=score_floor)
    tf.saved_model.save(module, str(export_dir), signatures=module.signatures())
    extra = export_dir / "assets.extra"
    write_warmup_requests(extra / WARMUP_FILE, model_name=model_name, size=config.input_size, batches=warmup_batches)
    info = {
        "kind": "detector",
        "detector": config.to_dict(),
        "score_floor": score_floor,
        **config.model_views.to_metadata(),
        **(metadata or {}),
    }
    (extra / METADATA_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    log.info("exported %s to %s", model_name, export_dir)
    return export_dir


def existing_versions(model_dir: Path) -> list[int]:
    """The integer version folders under ``model_dir``, ascending."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def publish(staging: Path, model_dir: Path, *, version: int | None = None, replace: bool = False) -> int:
    """Move a finished export from ``staging`` to ``model_dir/<version>/`` with one atomic rename, its files flushed
    to disk first (:mod:`services.files`).

    Args:
        staging: The export folder, on the same file system (best: from :func:`export_staging`).
        model_dir: ``models/<name>``.
        version: The version to publish as; default the next one (``n + 1``).
        replace: Allow replacing an existing ``version`` (its folder is swapped out, then deleted).

    Returns:
        The published version number.

    Two publishers racing for ``n + 1`` cannot overwrite each other: each first reserves its number by creating
    ``.reserve-<n>`` exclusively, and the rename itself refuses a non-empty target; the loser takes the next number.
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    if version is not None:
        target = model_dir / str(version)
        if target.exists() and not replace:
            raise FileExistsError(f"version {version} already exists in {model_dir}")
        replace_dir(staging, target)
        log.info("published %s as version %d", staging, version)
        return version
    fsync_tree(staging)  # the files are on disk before any server can see the version
    while True:
        reserved = [int(p.name.split("-", 1)[1]) for p in model_dir.glob(".reserve-*") if p.name[9:].isdigit()]
        candidate = max([0, *existing_versions(model_dir), *reserved]) + 1
        reservation = model_dir / f".reserve-{candidate}"
        try:
            fd = os.open(reservation, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            continue
        os.close(fd)
        try:
            try:
                staging.rename(model_dir / str(candidate))
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    continue  # someone published this number without reserving it: take the next
                raise
            fsync_dir(model_dir)
            log.info("published %s as version %d", staging, candidate)
            return candidate
        finally:
            reservation.unlink(missing_ok=True)


@contextlib.contextmanager
def export_staging(model_dir: Path) -> Iterator[Path]:
    """Where to export a version before :func:`publish`: a path (not yet made) inside a hidden scratch folder beside
    ``model_dir``'s versions, which TFS and the embedded server skip. What is not published is removed when the
    block ends, on error too (:func:`services.files.scratch_dir`)."""
    with scratch_dir(model_dir) as scratch:
        yield scratch / "export"


def export_and_publish(
    model: keras.Model,
    config: DetectorConfig,
    model_dir: Path,
    *,
    version: int | None = None,
    replace: bool = False,
    metadata: dict[str, Any] | None = None,
    score_floor: float = DEFAULT_SCORE_FLOOR,
) -> tuple[int, Path]:
    """Export ``model`` beside ``model_dir``'s versions and publish it (see :func:`publish`); a failed export
    publishes nothing and leaves no temporary folder.

    Returns:
        The version number and its folder.
    """
    with export_staging(model_dir) as staging:
        export_detector(model, config, staging, model_name=model_dir.name, metadata=metadata, score_floor=score_floor)
        number = publish(staging, model_dir, version=version, replace=replace)
    return number, model_dir / str(number)
