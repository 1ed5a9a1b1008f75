"""How a train job sets up its run: the model's spec from the job's parameters, its starting weights (another run's
or a published version's), and its training and validation data (whole images or tiles)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from services.errors import InvalidParameter
from services.jobs.params import TrainParams
from services.store.checks import weights_file
from services.store.datasets.manifest import Manifest
from services.store.runs import RunStore
from services.training.classifier import ClassifierConfig
from services.training.crops import TrainViews, tiles_datasets
from services.training.detector import DetectorConfig
from services.training.models import ModelSpec, load_final

log = logging.getLogger(__name__)


def bn_momentum(steps_per_epoch: int) -> float:
    """Batch-norm momentum for a run: moving averages over about a quarter of an epoch (at least 10 steps, at most
    the 0.99 the demo uses), so the validation loss at each epoch's end is computed with current statistics.

    With Keras's 0.999 (or even 0.99) and a few dozen steps per epoch, inference-mode statistics lag the weights by
    many epochs: the validation loss stalls while the training loss falls, and early stopping would stop a run that
    is learning. (The final weights get exact statistics anyway: see ``recalibrate_batch_norm``.)
    """
    return min(0.99, 1.0 - 1.0 / max(10.0, steps_per_epoch / 4))


def model_spec(
    params: TrainParams, kind: str, classes: tuple[str, ...], data_dir: Path, steps: int, views: TrainViews
) -> ModelSpec:
    """The detector or classifier a train job builds."""
    # A run started from another run's weights needs no pretrained backbone: they are overwritten at once.
    weights = None if params.weights == "none" or params.init_from_run or params.init_from_model else params.weights
    if weights not in (None, "imagenet"):
        weights = str(weights_file(weights, data_dir))
    momentum = bn_momentum(steps)
    if kind == "detector":
        return ModelSpec(
            kind,
            DetectorConfig(
                classes=classes,
                input_size=params.input_size,
                backbone=params.backbone,
                alpha=params.alpha,
                weights=weights,
                max_detections=params.max_detections,
                bn_momentum=momentum,
                views=views.views,
                crop_size=views.crop_size,
                object_size_px=views.object_size_px,
            ),
        )
    return ModelSpec(
        kind,
        ClassifierConfig(
            classes=classes,
            input_size=params.input_size,
            backbone=params.backbone,
            alpha=params.alpha,
            weights=weights,
            bn_momentum=momentum,
        ),
    )


def init_weights(model: Any, params: TrainParams, runs: RunStore, model_root: Path | None) -> None:
    """Start a new run from another run's final weights, or from a published detector version's."""
    import tensorflow as tf

    if params.init_from_run is not None:
        source = f"run {params.init_from_run}"
        weights = load_final(runs.path(params.init_from_run) / "final")[1].get_weights()
    else:
        if model_root is None or params.init_from_version is None:
            raise InvalidParameter("init_from_model needs the model root and a version (checked at submit)")
        source = f"model {params.init_from_model} version {params.init_from_version}"
        loaded = tf.saved_model.load(str(model_root / str(params.init_from_model) / str(params.init_from_version)))
        weights = [v.numpy() for v in loaded.weights]
    try:
        model.set_weights(weights)
    except ValueError as exc:
        raise InvalidParameter(f"{source}'s weights do not fit this model: {exc}") from exc
    log.info("run %s starts from %s's weights", params.run, source)


def train_datasets(
    spec: ModelSpec,
    params: TrainParams,
    views: TrainViews,
    manifest: Manifest,
    folder: Path,
    *,
    seed: int,
    train_size: int,
) -> tuple[Any, Any | None]:
    """``(endless training batches, validation batches or None)`` of a run, by its views (whole images or tiles)."""
    train_files = [folder / f for f in manifest.record_files("train")]
    validation_files = [folder / f for f in manifest.record_files("validation")]
    validation_images = manifest.counts["validation"].images if "validation" in manifest.counts else 0
    if views.views == "tiles":
        return tiles_datasets(
            spec, params, views, train_files, validation_files if validation_images else [], seed=seed
        )
    train_data = spec.dataset(
        train_files,
        images=manifest.counts["train"].images,
        batch_size=params.batch_size,
        seed=seed,
        train_size=train_size,
    )
    validation_data = (
        spec.dataset(
            validation_files, images=validation_images, batch_size=params.batch_size, seed=None, train_size=None
        )
        if validation_files and validation_images
        else None
    )
    return train_data, validation_data
