"""The parameters of training, evaluation, export and active-learning jobs: one pydantic model per job type and a
discriminated union on ``type`` for the jobs API.

TensorFlow-free and disk-free: the gateway validates a body with these at submit time, the CLI builds its options from
them, and the worker parses the same models again. The checks that read the disk (datasets, runs, models) are in
:mod:`services.store.checks`. Adding a job type is a model here, a member of :data:`JobParams`, and a job function
registered in :mod:`services.worker.jobs`.
"""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""The names of datasets, runs and models: letters, digits, '_', '.', '-' (1-64)."""

Name = Annotated[str, Field(pattern=NAME_PATTERN.pattern, description="letters, digits, '_', '.', '-' (1-64)")]
Backbone = Literal["mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large"]
Split = Literal["train", "validation", "test"]
WarmupSource = Literal["auto", "traffic", "synthetic", "none"]
"""Where an export's ``assets.extra/tf_serving_warmup_requests`` come from: ``traffic`` (the model's sample of real
canvases that the gateway keeps with ``SPOTTER_WARMUP_SAMPLES``; the job fails if none fits), ``synthetic`` (grey
canvases, one per batch size), ``none`` (no warmup file), ``auto`` (traffic if any fits, else synthetic)."""
_WARMUP_DESCRIPTION = (
    "the new version's warmup records: 'auto' (the model's traffic sample if it has canvases of the right size, "
    "else synthetic), 'traffic' (that sample, or fail), 'synthetic' (grey canvases), 'none' (no warmup file)"
)

WEIGHTS_DIR = "weights"
"""The folder of the data folder that a train job's ``weights`` file is taken from, by name."""
WEIGHTS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")


def check_weights_name(value: str) -> None:
    """``"imagenet"``, ``"none"``, or a plain file name (never a path: the worker opens nothing else on the host).

    Raises:
        ValueError: anything else (pydantic turns it into a 422 naming ``weights``).
    """
    if value in ("imagenet", "none"):
        return
    if not WEIGHTS_NAME.match(value) or ".." in value:
        raise ValueError(
            f"weights must be 'imagenet', 'none' or the name of a file in the data folder's {WEIGHTS_DIR}/ folder "
            "(letters, digits, '_', '.', '+', '-'; no folders), not a path"
        )


def check_data_relative(value: str, parameter: str) -> None:
    """A folder named by a job relative to the data folder: never absolute, never climbing out with ``..``, so a job
    can't make the worker look at (or the API answer about) anything else on the host.

    Raises:
        ValueError: an absolute path, a ``~`` path or a ``..`` part (pydantic turns it into a 422 naming it).
    """
    posix = value.replace("\\", "/")
    if not posix or posix.startswith(("/", "~")) or ".." in PurePosixPath(posix).parts:
        raise ValueError(f"{parameter} must be a folder relative to the data folder (no absolute path, no '..')")


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PublishOptions(_Params):
    """Where an export publishes, and its gate."""

    model: Name = Field(description="the model's name: published as models/<model>/<n+1>/")
    threshold: float = Field(0.02, ge=0.0, le=1.0, description="allowed drop of the gate's score vs the served one")
    force: bool = Field(False, description="publish even if the gate refuses")
    warmup: WarmupSource = Field("auto", description=_WARMUP_DESCRIPTION)


Alpha = Annotated[float, Field(ge=0.1, le=1.4, description="MobileNet width multiplier")]
InputSize = Annotated[
    int, Field(ge=32, le=1024, multiple_of=32, description="the model's canvas S (a detector's at least 64)")
]


class TrainingOptions(_Params):
    """How a model is trained, apart from what it is trained on and its size: the settings a train job and every row
    of a sweep share (one definition, so a sweep's rows train exactly as train jobs do)."""

    backbone: Backbone = "mobilenet_v2"
    weights: str = Field(
        "imagenet",
        min_length=1,
        description="'imagenet' (from Keras's cache if it is there), 'none' (from scratch), or the file name of a "
        f"backbone weights file in the data folder's {WEIGHTS_DIR}/ folder (a name, not a path)",
    )
    epochs: int = Field(10, ge=1, le=1000)
    steps_per_epoch: int | None = Field(None, ge=1, le=100_000, description="default: one pass over train")
    batch_size: int = Field(16, ge=1, le=512)
    train_size: int | None = Field(None, ge=64, le=1024, multiple_of=32, description="detector crop size")
    views: Literal["auto", "whole", "tiles"] = Field(
        "auto",
        description="how the detector sees an image: 'whole' (letterboxed, the TF OD API's way), 'tiles' (trained on "
        "native-scale crops of train_size, served tiled), 'auto' (decided from the dataset's object and image sizes)",
    )
    background_ratio: float = Field(
        0.25, ge=0.0, le=0.9, description="tiles: the fraction of training crops placed at random, not on an object"
    )
    learning_rate: float = Field(2e-3, gt=0.0, le=1.0)
    warmup_steps: int | None = Field(None, ge=0, le=100_000, description="default: 10 % of the steps, at most 200")
    patience: int = Field(3, ge=0, le=100, description="early stopping on validation loss (0: off)")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    deterministic: bool = Field(False, description="TensorFlow's deterministic kernels: repeatable runs, slower")
    max_detections: int = Field(100, ge=1, le=1000)
    timeout_seconds: int = Field(6 * 3600, ge=60, le=7 * 24 * 3600)

    @field_validator("weights")
    @classmethod
    def _weights_name(cls, value: str) -> str:
        check_weights_name(value)
        return value


class TrainParams(TrainingOptions):
    """Train a detector (detection dataset) or a classifier (classification dataset) into a run."""

    type: Literal["train"] = "train"
    dataset: Name = Field(description="the dataset to train on (its kind decides detector or classifier)")
    dataset_version: int | None = Field(None, ge=1, description="default: the latest (fixed at submit)")
    run: Name | None = Field(None, description="a run to train into; naming an unfinished one resumes it")
    restart: bool = Field(False, description="start the run over, discarding its checkpoints")
    alpha: Alpha = 0.35
    input_size: InputSize = 320
    init_from_run: Name | None = Field(
        None,
        description="start from a complete run's final weights (same kind, classes, backbone and alpha); "
        "'weights' is then not used",
    )
    init_from_model: Name | None = Field(
        None, description="or start from a published detector version's weights (same classes, backbone and alpha)"
    )
    init_from_version: int | None = Field(None, ge=1, description="with init_from_model: default the latest")
    evaluate: bool = Field(False, description="chain an evaluate job on the validation split")
    export: PublishOptions | None = Field(None, description="chain an export job (after evaluate, if any)")

    @model_validator(mode="after")
    def _crop_fits(self) -> TrainParams:
        if self.train_size is not None and self.train_size > self.input_size:
            raise ValueError(f"train_size {self.train_size} is larger than input_size {self.input_size}")
        if self.init_from_run is not None and self.init_from_model is not None:
            raise ValueError("give at most one of init_from_run and init_from_model")
        if self.init_from_version is not None and self.init_from_model is None:
            raise ValueError("init_from_version goes with init_from_model")
        return self


class EvaluateParams(_Params):
    """Evaluate a run's trained weights, or a published model version, on a dataset split."""

    type: Literal["evaluate"] = "evaluate"
    run: Name | None = Field(None, description="a trained run")
    model: Name | None = Field(None, description="or a published model")
    version: int | None = Field(None, ge=1, description="with model: default the latest")
    dataset: Name | None = Field(None, description="default: the run's dataset (required with model)")
    dataset_version: int | None = Field(None, ge=1)
    split: Split = "validation"
    min_score: float = Field(0.5, ge=0.0, le=1.0, description="operating point for precision, recall and mean IoU")
    timeout_seconds: int = Field(3600, ge=60, le=7 * 24 * 3600)

    @model_validator(mode="after")
    def _one_source(self) -> EvaluateParams:
        if (self.run is None) == (self.model is None):
            raise ValueError("give exactly one of run (trained weights) or model (a published version)")
        if self.version is not None and self.model is None:
            raise ValueError("version goes with model")
        if self.model is not None and self.dataset is None:
            raise ValueError("evaluating a published model needs a dataset")
        return self


class ExportParams(_Params):
    """Export a complete run, gate it against the served version, and publish it."""

    type: Literal["export"] = "export"
    run: Name = Field(description="a complete run")
    model: Name = Field(description="publish as models/<model>/<n+1>/")
    threshold: float = Field(0.02, ge=0.0, le=1.0, description="the gate's allowed drop vs the served version")
    force: bool = Field(False, description="publish even if the gate refuses")
    dataset: Name | None = Field(None, description="the gate's data; default: the run's dataset")
    dataset_version: int | None = Field(None, ge=1)
    split: Split = "validation"
    warmup: WarmupSource = Field("auto", description=_WARMUP_DESCRIPTION)
    timeout_seconds: int = Field(3600, ge=60, le=7 * 24 * 3600)


class ActiveLearningParams(_Params):
    """Grow a boxed dataset from a pool of images labelled as a whole (or not at all), round by round: predict on the
    pool, accept confident boxes that agree with the image's label, send the rest to review, retrain from the
    current weights on the grown dataset, evaluate, publish (see docs/active-learning.md)."""

    type: Literal["active-learning"] = "active-learning"
    model: Name = Field(description="the detector to improve: its versions are predicted with and published to")
    version: int | None = Field(None, ge=1, description="the version to start from (default: the latest)")
    dataset: Name = Field(description="the boxed detection dataset the detector's classes come from")
    dataset_version: int | None = Field(None, ge=1, description="default: the latest (fixed at submit)")
    pool: str | None = Field(
        None,
        description="a folder of images, one sub-folder per class (images in the root have no label); "
        "relative to the data folder",
    )
    pool_dataset: Name | None = Field(None, description="or a pool dataset (imported with pool: true)")
    pool_dataset_version: int | None = Field(None, ge=1)
    rounds: int = Field(3, ge=1, le=50)
    min_score: float = Field(0.9, gt=0.0, le=1.0, description="a labelled image's boxes are accepted from this score")
    unlabelled_min_score: float = Field(0.97, gt=0.0, le=1.0, description="the same for images without a label")
    candidate_score: float = Field(
        0.2,
        gt=0.0,
        le=1.0,
        description="boxes from this score are candidates: one that is not accepted sends its image to review",
    )
    min_gain: float = Field(0.005, ge=0.0, le=1.0, description="stop when a round raises validation mAP@0.5 less")
    budget: int | None = Field(
        None, ge=1, le=100_000, description="images sent to review per round at most (default: every one not accepted)"
    )
    selection: Literal["uncertainty", "random"] = Field(
        "uncertainty",
        description="with a budget: which images go to review: 'uncertainty' (detection scores nearest "
        "decision_score first, near-duplicates skipped) or 'random' (seeded by seed and the round)",
    )
    decision_score: float = Field(0.5, gt=0.0, lt=1.0, description="uncertainty: the score of a coin-toss detection")
    max_similarity: float = Field(
        0.95, gt=0.0, le=1.0, description="uncertainty: thumbnails this similar (cosine) are near-duplicates"
    )
    predict_via: Literal["local", "gateway"] = Field(
        "local", description="'local': the SavedModel in the worker; 'gateway': the gateway's :detect (batched)"
    )
    predict_batch: int = Field(16, ge=1, le=256, description="images per local batch, or requests in flight")
    epochs: int = Field(3, ge=1, le=1000, description="per round")
    steps_per_epoch: int | None = Field(None, ge=1, le=100_000)
    batch_size: int = Field(16, ge=1, le=512)
    train_size: int | None = Field(None, ge=64, le=1024, multiple_of=32)
    learning_rate: float = Field(5e-4, gt=0.0, le=1.0, description="lower than from scratch: training goes on")
    warmup_steps: int | None = Field(None, ge=0, le=100_000)
    patience: int = Field(0, ge=0, le=100)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    threshold: float = Field(0.02, ge=0.0, le=1.0, description="the export gate's allowed drop per round")
    force: bool = Field(False, description="publish each round even if the gate refuses")
    run_prefix: Name | None = Field(None, description="runs are <prefix>-r1, -r2...; default: a new one")
    timeout_seconds: int = Field(24 * 3600, ge=60, le=7 * 24 * 3600)

    @field_validator("pool")
    @classmethod
    def _pool_inside_data(cls, value: str | None) -> str | None:
        if value is not None:
            check_data_relative(value, "pool")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ActiveLearningParams:
        if (self.pool is None) == (self.pool_dataset is None):
            raise ValueError("give exactly one of pool (a folder) or pool_dataset")
        if self.pool_dataset_version is not None and self.pool_dataset is None:
            raise ValueError("pool_dataset_version goes with pool_dataset")
        if self.unlabelled_min_score < self.min_score:
            raise ValueError("unlabelled_min_score must be at least min_score: images without a label need more")
        if self.candidate_score > self.min_score:
            raise ValueError("candidate_score must be at most min_score")
        return self


MAX_SWEEP_ROWS = 12
"""A sweep trains at most this many combinations (alphas x input sizes)."""
SPEED_BATCHES = (1, 4, 8, 16)


def sweep_run(prefix: str, alpha: float, input_size: int) -> str:
    """The run a sweep's row trains into: ``<prefix>-a<alpha>-s<size>`` (``shapes-sweep-1a2b-a0.35-s128``)."""
    return f"{prefix}-a{alpha:g}-s{input_size}"


ROW_NAME_ROOM = len(sweep_run("", 0.123456, 1024))
"""How much of a run name a row's suffix takes at most: a sweep's run prefix must leave it room."""


class SweepParams(TrainingOptions):
    """Train one run per combination of width multiplier and input size (each a train job chained with an evaluate
    job, run in parallel over the workers), then measure each one's export (images/s at batch 1 and at its best
    batch, bytes on disk) and write the accuracy-against-speed table and plot with its Pareto front (see
    docs/models.md, "Choosing a size: sweeps")."""

    type: Literal["sweep"] = "sweep"
    dataset: Name = Field(description="the dataset every row trains on (its kind decides detector or classifier)")
    dataset_version: int | None = Field(None, ge=1, description="default: the latest (fixed at submit)")
    alphas: list[Alpha] = Field(min_length=1, description="the width multipliers to try")
    input_sizes: list[InputSize] = Field(min_length=1, description="the input sizes S to try")
    split: Split = Field("validation", description="the split each row is evaluated on")
    batches: list[int] = Field(
        list(SPEED_BATCHES),
        min_length=1,
        max_length=8,
        description="the batch sizes each export's images/s is measured at (1 is always measured too)",
    )
    measure_seconds: float = Field(
        2.0, ge=0.05, le=60.0, description="seconds each row is timed for at each batch size, over all its rounds"
    )
    measure_rounds: int = Field(
        5, ge=1, le=50, description="the rows are timed in turns: this many rounds of one window per row and batch size"
    )
    run_prefix: Name | None = Field(
        None,
        max_length=64 - ROW_NAME_ROOM,
        description="rows train into runs <prefix>-a<alpha>-s<size>; default: <dataset>-sweep-<random>",
    )

    @field_validator("alphas", "input_sizes")
    @classmethod
    def _no_repeats(cls, values: list[Any]) -> list[Any]:
        if len({f"{v:g}" for v in values}) != len(values):  # as the rows' run names spell them
            raise ValueError(f"values are repeated: {values}")
        return values

    @field_validator("batches")
    @classmethod
    def _batch_sizes(cls, values: list[int]) -> list[int]:
        if any(not 1 <= b <= 256 for b in values):
            raise ValueError(f"batch sizes must be 1..256, got {values}")
        return sorted({1, *values})

    @model_validator(mode="after")
    def _rows_fit(self) -> SweepParams:
        rows = len(self.alphas) * len(self.input_sizes)
        if rows > MAX_SWEEP_ROWS:
            raise ValueError(
                f"alphas x input_sizes is {len(self.alphas)} x {len(self.input_sizes)} = {rows} combinations; "
                f"a sweep trains at most {MAX_SWEEP_ROWS}"
            )
        if self.train_size is not None and self.train_size > min(self.input_sizes):
            raise ValueError(f"train_size {self.train_size} is larger than input_sizes {min(self.input_sizes)}")
        return self

    def rows(self) -> list[TrainParams]:
        """Each combination's train job (alphas outer, sizes inner), evaluated on :attr:`split`; its run named from
        :attr:`run_prefix` (which the submit-time check fills in)."""
        options = self.model_dump(include=set(TrainingOptions.model_fields))
        return [
            TrainParams(
                **options,
                dataset=self.dataset,
                dataset_version=self.dataset_version,
                alpha=alpha,
                input_size=size,
                run=sweep_run(self.run_prefix, alpha, size) if self.run_prefix else None,
            )
            for alpha in self.alphas
            for size in self.input_sizes
        ]


JobParams = Annotated[
    TrainParams | EvaluateParams | ExportParams | ActiveLearningParams | SweepParams, Field(discriminator="type")
]
"""What ``POST /v1/jobs`` takes."""


def params_json(params: BaseModel) -> dict[str, Any]:
    """The params as plain JSON (what a job's body and its ``meta["params"]`` hold)."""
    data: dict[str, Any] = json.loads(params.model_dump_json())
    return data
