"""The image classifier: a MobileNet backbone (width ``alpha``, input size S) with global pooling and a softmax, the
``tf.data`` pipeline over a folder-per-class dataset's records, and its export.

Images are letterboxed to S like everything the gateway sends (docs/architecture.md), so training sees what serving
sees. Export signatures (docs/architecture.md): ``serving_default`` (``images`` uint8 ``[-1, S, S, 3]`` ->
``probabilities`` float32 ``[-1, K]``, index ``k`` is label-map id ``k + 1``) and ``labels``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import keras
import tensorflow as tf
from keras import layers

from services.training.augment import AugmentConfig, augment
from services.training.backbones import resolve_weights
from services.training.detector import BACKBONES
from services.training.export import (
    LABELS_INPUT,
    METADATA_FILE,
    WARMUP_FILE,
    label_rows,
    saved_variables,
    write_warmup_requests,
)
from services.training.letterbox import letterbox
from services.vision.tiling import ModelViews

log = logging.getLogger(__name__)

AUTOTUNE = tf.data.AUTOTUNE


@dataclass(frozen=True, slots=True)
class ClassifierConfig:
    """Everything needed to rebuild a classifier.

    Attributes:
        classes: Class names in label-map order (label-map id = index + 1).
        input_size: S, a multiple of 32, at least 32.
        backbone: One of :data:`services.training.detector.BACKBONES`.
        alpha: MobileNet width multiplier.
        weights: ``None``/``"none"``, ``"imagenet"`` (from Keras's cache if there) or a weights file.
        dropout: Dropout before the last layer.
        bn_momentum: Batch-norm momentum (Keras's 0.999 is too slow for short trainings from scratch).
    """

    classes: tuple[str, ...]
    input_size: int = 224
    backbone: str = "mobilenet_v2"
    alpha: float = 0.35
    weights: str | None = None
    dropout: float = 0.2
    bn_momentum: float = 0.99

    def __post_init__(self) -> None:
        if len(self.classes) < 2:
            raise ValueError("a classifier needs at least two classes")
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; known: {', '.join(BACKBONES)}")
        if self.input_size % 32 or self.input_size < 32:
            raise ValueError(f"input_size must be a multiple of 32 and at least 32, got {self.input_size}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["classes"] = list(self.classes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassifierConfig:
        values = dict(data)
        values["classes"] = tuple(values["classes"])
        return cls(**values)


def build_classifier(config: ClassifierConfig, *, pretrained: bool = True) -> keras.Model:
    """A Keras model from float32 0..255 pixels ``[batch, S, S, 3]`` to class probabilities ``[batch, K]``."""
    size = config.input_size
    inputs = keras.Input((size, size, 3), name="pixels")
    weights = resolve_weights(config.backbone, config.alpha, config.weights, size=size) if pretrained else None
    common: dict[str, Any] = {"include_top": False, "alpha": config.alpha, "weights": weights, "pooling": "avg"}
    if config.backbone == "mobilenet_v2":
        scaled = layers.Rescaling(1 / 127.5, offset=-1.0, name="to_unit_range")(inputs)
        net = keras.applications.MobileNetV2(input_tensor=scaled, **common)
    elif config.backbone == "mobilenet_v3_small":
        net = keras.applications.MobileNetV3Small(input_tensor=inputs, minimalistic=False, **common)
    else:
        net = keras.applications.MobileNetV3Large(input_tensor=inputs, minimalistic=False, **common)
    x = layers.Dropout(config.dropout, name="dropout")(net.output)
    outputs = layers.Dense(config.num_classes, activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs, name=f"classifier_{config.backbone}_{config.alpha:g}")
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = config.bn_momentum
    return model


def compile_classifier(model: keras.Model, *, learning_rate: float, total_steps: int, warmup_steps: int) -> None:
    """AdamW with warm-up and cosine decay, sparse categorical cross-entropy, top-1 accuracy."""
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=learning_rate * 0.01,
        decay_steps=max(total_steps - warmup_steps, 1),
        alpha=0.01,
        warmup_target=learning_rate,
        warmup_steps=warmup_steps,
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=schedule, weight_decay=1e-4, clipnorm=10.0),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/class/label": tf.io.VarLenFeature(tf.int64),
}


def _parse(record: tf.Tensor, size: int) -> tuple[tf.Tensor, tf.Tensor]:
    parsed = tf.io.parse_single_example(record, _FEATURES)
    image = tf.io.decode_image(parsed["image/encoded"], channels=3, expand_animations=False)
    canvas, _ = letterbox(tf.ensure_shape(image, [None, None, 3]), size)
    label = tf.sparse.to_dense(parsed["image/class/label"])[0] - 1  # label-map id -> index
    return canvas, tf.cast(label, tf.int32)


def classifier_dataset(
    files: Sequence[str | Path],
    *,
    size: int,
    batch_size: int,
    seed: int | None = None,
    augment_config: AugmentConfig | None = None,
    shuffle_buffer: int = 1024,
) -> tf.data.Dataset:
    """Batches of ``(float32 image, class index)`` from a classification dataset's records, letterboxed to ``size``.

    With ``seed``: endless, shuffled, augmented (scale and crop back to ``size``, flip, brightness and contrast).
    Without: one pass in order, unaugmented.
    """
    paths = [str(f) for f in files]
    if not paths:
        raise ValueError("no TFRecord files given")
    train = seed is not None
    ds = tf.data.TFRecordDataset(paths)
    if train:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.map(lambda r: _parse(r, size), num_parallel_calls=AUTOTUNE, deterministic=True)
    config = augment_config or AugmentConfig(scale_range=(0.85, 1.15), min_visible=0.0)
    no_boxes = tf.zeros([1, 4], tf.float32)
    no_classes = tf.zeros([1], tf.int32)

    def prepare(n: tf.Tensor, example: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        image, label = example
        if train:
            example_seed = tf.stack([tf.constant(seed or 0, tf.int64), n])
            image, _, _ = augment(image, no_boxes, no_classes, example_seed, size=size, config=config)
        else:
            image = tf.cast(image, tf.float32)
        return image, label

    ds = ds.enumerate().map(prepare, num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=train).prefetch(AUTOTUNE)


class ClassifierModule(tf.Module):  # type: ignore[misc]
    """The exported classifier graph: uint8 canvases in, probabilities out, plus ``labels``."""

    def __init__(self, model: keras.Model, config: ClassifierConfig) -> None:
        super().__init__(name="classifier")
        twin = build_classifier(config, pretrained=False)
        twin.set_weights(model.get_weights())
        self.weights = saved_variables(twin)
        self._parts = SimpleNamespace(model=twin)
        self.config = config

    def signatures(self) -> dict[str, Any]:
        size = self.config.input_size
        serve = tf.function(
            self._serve, input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8, name="images")]
        )
        labels = tf.function(self._labels, input_signature=[LABELS_INPUT])
        return {"serving_default": serve.get_concrete_function(), "labels": labels.get_concrete_function()}

    def _serve(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = self._parts.model(tf.cast(images, tf.float32), training=False)
        return {"probabilities": tf.ensure_shape(probabilities, [None, self.config.num_classes])}

    def _labels(self, batch: tf.Tensor) -> dict[str, tf.Tensor]:
        return label_rows(batch, self.config.classes)


def export_classifier(
    model: keras.Model,
    config: ClassifierConfig,
    export_dir: Path,
    *,
    model_name: str,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write the classifier's SavedModel, warmup records and ``assets.extra/spotter.json`` to ``export_dir`` (which
    must not exist); publish it with :func:`services.training.export.publish`."""
    if export_dir.exists():
        raise FileExistsError(f"export folder already exists: {export_dir}")
    module = ClassifierModule(model, config)
    tf.saved_model.save(module, str(export_dir), signatures=module.signatures())
    extra = export_dir / "assets.extra"
    write_warmup_requests(extra / WARMUP_FILE, model_name=model_name, size=config.input_size)
    info = {"kind": "classifier", "classifier": config.to_dict(), **ModelViews().to_metadata(), **(metadata or {})}
    (extra / METADATA_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    log.info("exported classifier %s to %s", model_name, export_dir)
    return export_dir
