"""Building, compiling, feeding and exporting either kind of model from one description, so the train, evaluate and
export jobs treat detectors and classifiers alike. A run's ``final/`` folder holds ``config.json`` (``kind`` and the
model's config) and ``model.weights.h5``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from services.files import staging_dir
from services.training.classifier import (
    ClassifierConfig,
    ClassifierModule,
    build_classifier,
    classifier_dataset,
    compile_classifier,
    export_classifier,
)
from services.training.detector import DetectorConfig, build_detector
from services.training.export import DetectorModule, export_detector
from services.training.inputs import tfrecord_dataset
from services.training.scoring import (
    ClassifierPredictor,
    DetectorPredictor,
    classifier,
    encoded_detector,
    view_detector,
)
from services.training.train import TrainConfig, compile_detector
from services.vision.tiling import Views

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model to build: its ``kind`` and config (a :class:`DetectorConfig` or a :class:`ClassifierConfig`)."""

    kind: str
    config: DetectorConfig | ClassifierConfig

    @property
    def classes(self) -> tuple[str, ...]:
        return self.config.classes

    @property
    def input_size(self) -> int:
        return self.config.input_size

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "config": self.config.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        kind = data["kind"]
        config = (
            DetectorConfig.from_dict(data["config"])
            if kind == "detector"
            else ClassifierConfig.from_dict(data["config"])
        )
        return cls(kind, config)

    def build(self, *, pretrained: bool = True) -> keras.Model:
        if isinstance(self.config, DetectorConfig):
            return build_detector(self.config, pretrained=pretrained)
        return build_classifier(self.config, pretrained=pretrained)

    def compile(self, model: keras.Model, train: TrainConfig) -> None:
        if isinstance(self.config, DetectorConfig):
            compile_detector(model, self.config, train)
        else:
            compile_classifier(
                model, learning_rate=train.learning_rate, total_steps=train.total_steps, warmup_steps=train.warmup_steps
            )

    def dataset(
        self, files: list[Path], *, images: int, batch_size: int, seed: int | None, train_size: int | None
    ) -> tf.data.Dataset:
        """Training batches (``seed``: endless, augmented) or validation batches (one ordered pass) of ``images``
        images."""
        buffer = max(16, min(images, 1024))  # a buffer past the data's size only costs time to fill
        if isinstance(self.config, DetectorConfig):
            ds = tfrecord_dataset(
                files,
                size=self.config.input_size,
                batch_size=batch_size,
                stride=self.config.stride,
                num_classes=self.config.num_classes,
                seed=seed,
                train_size=train_size if seed is not None else None,
                shuffle_buffer=buffer,
            )
        else:
            ds = classifier_dataset(
                files, size=self.config.input_size, batch_size=batch_size, seed=seed, shuffle_buffer=buffer
            )
        if seed is None:
            # A known length lets Keras run validation without its "ran out of data" warning every epoch.
            ds = ds.apply(tf.data.experimental.assert_cardinality(math.ceil(images / batch_size)))
        return ds

    def predictor(self, model: keras.Model) -> DetectorPredictor | ClassifierPredictor:
        """Score trained weights without exporting: the graph the export will hold, built in memory."""
        if isinstance(self.config, DetectorConfig):
            module = DetectorModule(model, self.config)
            if self.views == "tiles":
                serve = module.signatures()["serving_default"]
                return view_detector(serve, self.input_size, self.classes, self.classes, views="tiles")
            return encoded_detector(module.signatures()["detect_encoded"], self.classes, self.classes)
        cmodule = ClassifierModule(model, self.config)
        return classifier(cmodule.signatures()["serving_default"], self.input_size, self.classes, self.classes)

    def export(self, model: keras.Model, folder: Path, *, model_name: str, metadata: dict[str, Any]) -> Path:
        if isinstance(self.config, DetectorConfig):
            return export_detector(model, self.config, folder, model_name=model_name, metadata=metadata)
        return export_classifier(model, self.config, folder, model_name=model_name, metadata=metadata)

    @property
    def views(self) -> Views:
        """How the model sees an image (classifiers: the whole image)."""
        return self.config.model_views.views if isinstance(self.config, DetectorConfig) else "whole"

    @property
    def max_detections(self) -> int:
        return self.config.max_detections if isinstance(self.config, DetectorConfig) else 0


def save_final(folder: Path, spec: ModelSpec, model: keras.Model) -> Path:
    """Write ``folder`` (a run's ``final/``) aside and rename it into place (replacing an older one)."""
    with staging_dir(folder) as staging:
        model.save_weights(str(staging / WEIGHTS_FILE))
        (staging / CONFIG_FILE).write_text(json.dumps(spec.to_dict(), indent=2) + "\n")
    return folder


def load_final(folder: Path) -> tuple[ModelSpec, keras.Model]:
    """The spec and the trained model of a run's ``final/`` folder."""
    spec = ModelSpec.from_dict(json.loads((folder / CONFIG_FILE).read_text()))
    model = spec.build(pretrained=False)
    model.load_weights(str(folder / WEIGHTS_FILE))
    return spec, model


def default_steps(images: int, batch_size: int) -> int:
    """One pass over the training images per epoch (at least one step)."""
    return max(1, math.ceil(images / batch_size))
