"""Active learning with a simulated annotator: does labelling the images the classifier doubts most teach it more
than labelling images drawn at random?

The set-up (:func:`make_setup`): a small labelled start, a pool several times larger and a fixed held-out test set,
all generated digits (:mod:`services.training.digits`, the :data:`~services.training.digits.HARD` style: varied
scale, thin strokes, noise). The pool's labels are kept by an :class:`Oracle`, which the loop can only ask for the
labels of images it has chosen, once; nothing else reads them.

A round (:func:`run_strategy`): the current model's probabilities on the pool's unlabelled images, their doubt
(:func:`~services.training.selection.classification_doubt`, the margin), :func:`~services.training.selection.choose`
picks ``budget`` of them by the strategy (``uncertainty``: most doubt first, near-duplicate thumbnails skipped;
``cluster_margin``: the most doubtful of each cluster of the shortlist, clustered on the model's penultimate-layer
embeddings; ``random``: a seeded draw), the oracle reveals those labels, they join the labelled set, and a
classifier is trained **from scratch** on it, then scored (top-1 and macro-F1) on the test set.

From scratch rather than from the last round's weights: a point on the curve then depends only on which images are
labelled, not on the path to them, both strategies get the same training at every point (same steps, same seed),
and warm-started networks are known to generalise worse than fresh ones trained on the same data. Training goes
through the project's classifier training (:mod:`services.training.classifier`: letterboxed canvases, its
``tf.data`` pipeline and augmentation over TFRecords written by the dataset writer, its AdamW and cosine schedule, the
one fit loop), in one graph reused (:class:`Trainer`); the flip augmentation is off (a mirrored 2 is not a 2). The
network is a small convnet (:func:`small_cnn`) unless ``network="mobilenet_v2"`` asks for the project's backbone,
which did not learn within this experiment's compute (see :func:`small_cnn`).
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import keras
import numpy as np
import tensorflow as tf

from services.store.datasets.validate import ValidImage
from services.training.augment import AugmentConfig
from services.training.classifier import ClassifierConfig, classifier_dataset
from services.training.datasets.tfrecord import write_shards
from services.training.digits import DIGITS, HARD, SIZE, DigitStyle, generate_digits
from services.training.evaluate import classification_report
from services.training.fitting import FitPlan, FitState, fit_run
from services.training.letterbox import letterbox
from services.training.models import ModelSpec
from services.training.run_setup import bn_momentum
from services.training.selection import Strategy, choose, classification_doubt, thumbnail_feature
from services.training.train import seed_everything
from services.vision.labelmap import LabelMap

log = logging.getLogger(__name__)

Network = Literal["small_cnn", "mobilenet_v2"]

AUGMENT = AugmentConfig(flip=False, scale_range=(0.85, 1.15), min_visible=0.0)
"""The classifier's augmentation without the flip."""


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    """The experiment's sizes and training. Per class: ``initial`` labelled images to start, ``pool`` unlabelled
    ones, ``test`` held-out ones (the test set is the same for every seed: ``test_seed``). Each round labels
    ``budget`` pool images; each training is ``steps`` batches of ``batch_size``, or ``epochs`` passes over the
    labelled set when that is more (:meth:`steps_for`), so a larger set is not trained less per image.

    ``imbalance`` > 1 makes the pool uneven, as pools collected in the field are: digit ``c`` has
    ``pool * imbalance ** (-c / 9)`` images (``0`` the most, ``9`` ``imbalance`` times fewer), while the start and
    the test set stay balanced."""

    initial: int = 3
    pool: int = 50
    test: int = 50
    budget: int = 40
    rounds: int = 5
    input_size: int = 32
    alpha: float = 0.35
    steps: int = 300
    batch_size: int = 32
    learning_rate: float = 3e-3
    max_similarity: float = 0.95
    style: DigitStyle = HARD
    network: Network = "small_cnn"
    test_seed: int = 1000
    imbalance: float = 1.0
    epochs: float = 0.0

    def steps_for(self, labelled: int) -> int:
        """The training steps for ``labelled`` images: ``epochs`` passes, and never fewer than ``steps``."""
        return max(self.steps, math.ceil(self.epochs * labelled / self.batch_size))

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "style"} | {
            "style": {k: getattr(self.style, k) for k in self.style.__dataclass_fields__}
        }


class Oracle:
    """The pool's hidden labels: given out only by :meth:`reveal`, for chosen images, once each, and recorded."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.__labels = tuple(labels)  # name-mangled: not an attribute the loop reads by accident
        self.revealed: list[int] = []

    def __len__(self) -> int:
        return len(self.__labels)

    def reveal(self, indices: Sequence[int]) -> list[str]:
        """The labels of pool images ``indices`` (a person labelling them)."""
        again = sorted(set(indices) & set(self.revealed))
        if again or len(set(indices)) != len(indices):
            raise ValueError(f"pool images labelled twice: {again or list(indices)}")
        self.revealed.extend(int(i) for i in indices)
        return [self.__labels[i] for i in indices]


@dataclass(frozen=True, slots=True)
class Labelled:
    """An encoded image with its label."""

    data: bytes
    label: str


@dataclass(frozen=True, slots=True)
class Setup:
    """One seed's data. ``pool_labels`` is the hidden truth: only ever handed to an :class:`Oracle`."""

    classes: tuple[str, ...]
    initial: list[Labelled]
    pool: list[bytes]
    pool_labels: list[str] = field(repr=False)
    test: list[Labelled]


def _png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def make_setup(seed: int, config: SimulationConfig) -> Setup:
    """The start, the pool (shuffled) and the test set of ``seed``; the same seed makes the same images."""
    style = config.style
    initial = [Labelled(_png(d.image), d.label) for d in generate_digits(seed, config.initial, style=style)]
    counts = [max(1, round(config.pool * config.imbalance ** (-c / (len(DIGITS) - 1)))) for c in range(len(DIGITS))]
    drawn = [
        digit
        for c, label in enumerate(DIGITS)
        for digit in generate_digits(seed, counts[c], style=style, start=config.initial, only=label)
    ]
    order = np.random.default_rng([seed, 1]).permutation(len(drawn))
    test = [Labelled(_png(d.image), d.label) for d in generate_digits(config.test_seed, config.test, style=style)]
    return Setup(
        classes=DIGITS,
        initial=initial,
        pool=[_png(drawn[i].image) for i in order],
        pool_labels=[drawn[i].label for i in order],
        test=test,
    )


def canvases(images: Sequence[bytes], size: int) -> np.ndarray:
    """uint8 ``[n, S, S, 3]``: each image decoded (grey read as RGB) and letterboxed, as the classifier is fed."""
    return np.stack(
        [letterbox(tf.io.decode_image(data, channels=3, expand_animations=False), size)[0].numpy() for data in images]
    )


def probabilities(model: keras.Model, pixels: np.ndarray, batch: int = 256) -> np.ndarray:
    """The model's outputs for canvases ``pixels`` (inference mode): class probabilities ``[n, K]``, or, given
    :attr:`Trainer.embedder`, the embeddings ``[n, D]``."""
    parts = [
        model(tf.constant(pixels[i : i + batch], tf.float32), training=False).numpy()
        for i in range(0, len(pixels), batch)
    ]
    return np.concatenate(parts).astype(np.float64)


def write_records(labelled: Sequence[Labelled], classes: Sequence[str], folder: Path) -> list[Path]:
    """The labelled set as a classification split's TFRecord shards (the dataset writer's records): what the
    training reads, and all it reads."""
    folder.mkdir(parents=True, exist_ok=True)
    images = [
        ValidImage(
            filename=f"{n:05d}.png",
            path=folder / f"{n:05d}.png",
            width=SIZE,
            height=SIZE,
            format="png",
            sha256=hashlib.sha256(item.data).hexdigest(),
            labels=[item.label],
            data=item.data,
        )
        for n, item in enumerate(labelled)
    ]
    written = write_shards(folder, "train", images, LabelMap.from_names(classes))
    return [folder / name for name in written]


def small_cnn(classes: Sequence[str], size: int) -> keras.Model:
    """The experiment's default learner: three convolutions and a softmax (67 k weights), fed and trained
    exactly as the project's classifier is (float32 0..255 canvases in, probabilities out).

    Not the project's MobileNetV2 (``network="mobilenet_v2"``), because that one does not learn in what this
    experiment can spend per model on a shared 2-core machine: after 300 steps of 16 from scratch, on 200 hard
    digits, it answered one class for every image (top-1 0.10, on its own training images too; 0.12 with exact
    batch-norm statistics), and its first training took 137-168 s, nearly all of it tracing the graph. Measured,
    not guessed: see docs/active-learning.md. The question asked (does choosing by doubt beat choosing at random?)
    is about the choice; the learner only has to be one that learns from a few hundred images.
    """
    inputs = keras.Input((size, size, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    for filters in (32, 64, 64):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(0.3)(x)
    outputs = keras.layers.Dense(len(classes), activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="small_cnn")


class Trainer:
    """Trains a classifier from scratch, again and again, in one graph.

    Building and tracing a fresh Keras model's training step is slow on a busy 2-core machine (MobileNetV2: 137 s
    for its first 3 steps, 0.7 s for the next 3), so the model is built and compiled once, and each training starts
    by restoring the freshly initialised weights (batch-norm statistics included) and zeroing the optimizer's state
    (its step count too, so the warm-up and cosine schedule start over): from scratch, for the price of a fit.
    The classifier's schedule (warm-up, then cosine decay) is built on variables that each training sets to its own
    length (:meth:`SimulationConfig.steps_for`), so the graph need not be traced again when the length changes.
    Every training of a seed starts from that seed's initialisation (:meth:`initialise`), so two strategies' models
    differ by their data alone. (The MobileNetV2 option's batch-norm statistics are not recalibrated afterwards: a
    recalibration is one more traced graph per training.)
    """

    def __init__(self, classes: tuple[str, ...], config: SimulationConfig) -> None:
        self.classes = classes
        self.config = config
        self.spec = ModelSpec(
            "classifier",
            ClassifierConfig(
                classes=classes,
                input_size=config.input_size,
                alpha=config.alpha,
                weights=None,
                bn_momentum=bn_momentum(config.steps),
            ),
        )
        self.model = self._build()
        self.decay_steps = tf.Variable(float(config.steps), trainable=False, dtype=tf.float32)
        self.warmup_steps = tf.Variable(float(config.steps // 10), trainable=False, dtype=tf.float32)
        # compile_classifier's optimizer and loss, with a schedule whose length is set per training.
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=config.learning_rate * 0.01,
            decay_steps=self.decay_steps,
            alpha=0.01,
            warmup_target=config.learning_rate,
            warmup_steps=self.warmup_steps,
        )
        self.model.compile(
            optimizer=keras.optimizers.AdamW(learning_rate=schedule, weight_decay=1e-4, clipnorm=10.0),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        self.embedder = keras.Model(self.model.inputs, self.model.layers[-1].input)
        """The penultimate layer's output: the model's own features (same weights), for cluster_margin."""
        self.fresh = self.model.get_weights()

    def initialise(self, seed: int) -> None:
        """New initial weights, drawn with ``seed`` (a throwaway build of the same model)."""
        seed_everything(seed, deterministic_ops=False)
        self.fresh = self._build().get_weights()

    def _build(self) -> keras.Model:
        if self.config.network == "mobilenet_v2":
            return self.spec.build()
        return small_cnn(self.classes, self.config.input_size)

    def train(self, labelled: Sequence[Labelled], *, seed: int, folder: Path) -> keras.Model:
        """The model trained from the initial weights on ``labelled`` alone (its records in ``folder``)."""
        files = write_records(labelled, self.classes, folder)
        seed_everything(seed, deterministic_ops=False)
        self.model.set_weights(self.fresh)
        for variable in self.model.optimizer.variables:
            variable.assign(tf.zeros_like(variable))
        steps = self.config.steps_for(len(labelled))
        self.warmup_steps.assign(float(steps // 10))
        self.decay_steps.assign(float(max(steps - steps // 10, 1)))
        data = classifier_dataset(
            files,
            size=self.config.input_size,
            batch_size=self.config.batch_size,
            seed=seed,
            augment_config=AUGMENT,
            shuffle_buffer=max(16, len(labelled)),
        )
        plan = FitPlan(1, steps, patience=0, checkpoints=None, tensorboard=None, log_every=0)
        fit_run(self.model, data, None, plan, state=FitState(), initial_epoch=0, batch_size=self.config.batch_size)
        return self.model


def score(probs: np.ndarray, truth: Sequence[str], classes: Sequence[str]) -> tuple[float, float]:
    """Top-1 accuracy (:func:`~services.training.evaluate.classification_report`) and macro-F1 of ``probs``."""
    ids = {name: k + 1 for k, name in enumerate(classes)}
    report = classification_report([ids[t] for t in truth], [int(k) + 1 for k in probs.argmax(axis=1)], classes)
    matrix = np.asarray(report["confusion_matrix"]["rows_true_columns_predicted"], dtype=np.float64)  # type: ignore[index]
    hits = np.diag(matrix)
    f1 = 2 * hits / np.maximum(matrix.sum(axis=0) + matrix.sum(axis=1), 1)
    return float(report["accuracy"]), float(f1.mean())  # type: ignore[arg-type]


@dataclass(slots=True)
class RoundRecord:
    """One point of a curve: after round ``round`` (0: the start), ``labelled`` images and the test scores. For a
    selection round: the pool images chosen (in order), their doubt, and the model's probabilities on the whole pool
    that the choice was made from (for checking; not in :meth:`to_dict`)."""

    round: int
    labelled: int
    accuracy: float
    macro_f1: float
    chosen: list[int] = field(default_factory=list)
    chosen_doubt: list[float] = field(default_factory=list)
    skipped: int = 0
    pool_probabilities: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "labelled": self.labelled,
            "accuracy": round(self.accuracy, 4),
            "macro_f1": round(self.macro_f1, 4),
            "chosen": self.chosen,
            "mean_chosen_doubt": round(float(np.mean(self.chosen_doubt)), 4) if self.chosen_doubt else None,
            "near_duplicates_skipped": self.skipped,
        }


@dataclass(slots=True)
class Start:
    """A seed's round 0, shared by every strategy: the data, its pool canvases and thumbnails, the start model's
    pool probabilities and embeddings, and its record."""

    seed: int
    setup: Setup
    pool_pixels: np.ndarray
    test_pixels: np.ndarray
    thumbnails: np.ndarray
    pool_probabilities: np.ndarray
    record: RoundRecord
    pool_embeddings: np.ndarray


def start(seed: int, trainer: Trainer, work: Path) -> Start:
    """Make ``seed``'s data, draw its initial weights, and train and score its start model (round 0)."""
    config = trainer.config
    setup = make_setup(seed, config)
    pool_pixels = canvases(setup.pool, config.input_size)
    test_pixels = canvases([t.data for t in setup.test], config.input_size)
    trainer.initialise(seed)
    model = trainer.train(setup.initial, seed=seed * 100, folder=work / "round-0")
    accuracy, f1 = score(probabilities(model, test_pixels), [t.label for t in setup.test], setup.classes)
    record = RoundRecord(0, len(setup.initial), accuracy, f1)
    log.info("seed %d round 0: %d labelled, top-1 %.3f", seed, record.labelled, record.accuracy)
    thumbnails = np.stack([thumbnail_feature(data) for data in setup.pool])
    pool_probabilities = probabilities(model, pool_pixels)
    embeddings = probabilities(trainer.embedder, pool_pixels)
    return Start(seed, setup, pool_pixels, test_pixels, thumbnails, pool_probabilities, record, embeddings)


def run_strategy(strategy: Strategy, begun: Start, oracle: Oracle, trainer: Trainer, work: Path) -> list[RoundRecord]:
    """``config.rounds`` rounds of choosing, revealing, retraining and scoring from ``begun``; the records, round 0
    first. Pool labels come from ``oracle`` alone."""
    setup, seed, config = begun.setup, begun.seed, trainer.config
    labelled = list(setup.initial)
    remaining = list(range(len(setup.pool)))
    records, probs, embeddings = [begun.record], begun.pool_probabilities, begun.pool_embeddings
    for number in range(1, config.rounds + 1):
        if not remaining:
            break
        doubt = [classification_doubt(probs[i]) for i in remaining]
        features = {"uncertainty": begun.thumbnails, "cluster_margin": embeddings}.get(strategy)
        selection = choose(
            doubt,
            None if features is None else features[remaining],
            strategy=strategy,
            budget=config.budget,
            seed=[seed, number],
            max_similarity=config.max_similarity,
        )
        picked = [remaining[c] for c in selection.chosen]
        labels = oracle.reveal(picked)
        labelled += [Labelled(setup.pool[i], label) for i, label in zip(picked, labels, strict=True)]
        taken = set(picked)
        remaining = [i for i in remaining if i not in taken]
        folder = work / strategy / f"round-{number}"
        model = trainer.train(labelled, seed=seed * 100 + number, folder=folder)
        accuracy, f1 = score(probabilities(model, begun.test_pixels), [t.label for t in setup.test], setup.classes)
        records.append(
            RoundRecord(
                number,
                len(labelled),
                accuracy,
                f1,
                chosen=picked,
                chosen_doubt=[doubt[c] for c in selection.chosen],
                skipped=len(selection.near_duplicates),
                pool_probabilities=probs,
            )
        )
        log.info("seed %d %s round %d: %d labelled, top-1 %.3f", seed, strategy, number, len(labelled), accuracy)
        probs = probabilities(model, begun.pool_pixels)
        if strategy == "cluster_margin":
            embeddings = probabilities(trainer.embedder, begun.pool_pixels)
    return records
