"""The one fit loop: a Keras ``fit`` for every kind of model (the train job's, the demo's and the examples'), with
what a training job needs around it: a checkpoint every epoch (resumable: weights, optimizer state, history,
early-stopping state), early stopping on validation loss, TensorBoard logs, and progress (epoch, step, percent,
losses) reported and logged while it runs. A loss that becomes NaN or infinite fails the fit with
:class:`~services.errors.TrainingDiverged` (:class:`StopOnNonFiniteLoss`) before that epoch's checkpoint is written.
Without a checkpoint folder (the demo's fit, :func:`services.training.train.fit_detector`) nothing is saved.

Early stopping is done here rather than by ``keras.callbacks.EarlyStopping`` because its state (best loss, epochs
without improvement) must survive a resume: it is part of every checkpoint.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from services.errors import TrainingDiverged
from services.training.checkpoints import save_checkpoint

log = logging.getLogger(__name__)

Report = Callable[..., None]
"""Called with progress fields: ``progress`` (percent of the job), ``stage``, ``message``, ``epoch``, ``epochs``,
``step``, ``steps``, ``metrics`` (see :class:`services.worker.progress.JobRun.update`)."""


@dataclass(slots=True)
class FitState:
    """What a run has learnt so far, saved in each checkpoint."""

    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = 0
    best_loss: float = math.inf
    stale_epochs: int = 0
    stopped_early: bool = False
    resumed_from: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "history": self.history,
            "best_epoch": self.best_epoch,
            "best_loss": self.best_loss if math.isfinite(self.best_loss) else None,
            "stale_epochs": self.stale_epochs,
            "stopped_early": self.stopped_early,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FitState:
        best = data.get("best_loss")
        return cls(
            history={k: [float(x) for x in v] for k, v in (data.get("history") or {}).items()},
            best_epoch=int(data.get("best_epoch", 0)),
            best_loss=float(best) if best is not None else math.inf,
            stale_epochs=int(data.get("stale_epochs", 0)),
            stopped_early=bool(data.get("stopped_early", False)),
        )


@dataclass(frozen=True, slots=True)
class FitPlan:
    """How long and where: total ``epochs`` (a resumed run goes on to the same total), ``steps_per_epoch``,
    ``patience`` (epochs without a better validation loss before stopping; 0 = never), and the run's folders
    (``checkpoints`` ``None``: nothing is saved). ``share`` is the part of the job's percent that training covers
    (the rest is for what comes after); ``log_every`` is how many steps apart the loss is logged."""

    epochs: int
    steps_per_epoch: int
    patience: int
    checkpoints: Path | None
    tensorboard: Path | None
    share: float = 90.0
    log_every: int = 50


class StopOnNonFiniteLoss(keras.callbacks.Callback):  # type: ignore[misc]
    """Fails the fit at the first step whose loss (or, at an epoch's end, validation loss) is NaN or infinite.

    Like ``keras.callbacks.TerminateOnNaN``, but it raises :class:`~services.errors.TrainingDiverged` instead of
    quietly stopping: a stopped fit would look finished and keep (and export) weights that are NaN. The error is
    raised before the epoch's checkpoint is written, so the run keeps only weights from before the divergence.
    """

    def __init__(self, learning_rate: float | None = None) -> None:
        super().__init__()
        self.learning_rate = learning_rate
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._check((logs or {}).get("loss"), f"epoch {self.epoch + 1} step {batch + 1}", "loss")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._check((logs or {}).get("val_loss"), f"epoch {epoch + 1}", "validation loss")

    def _check(self, value: Any, where: str, what: str) -> None:
        if value is None or math.isfinite(float(value)):
            return
        rate = f" (learning_rate {self.learning_rate:g})" if self.learning_rate is not None else ""
        self.model.stop_training = True
        raise TrainingDiverged(
            f"training diverged: the {what} became {float(value)} at {where}; lower the learning rate{rate}, and "
            "check the dataset's boxes",
            details={"where": where, "metric": what},
        )


class _Checkpointing(keras.callbacks.Callback):  # type: ignore[misc]
    """At each epoch's end: history, early stopping, then the checkpoint (so a resume sees the same state)."""

    def __init__(self, plan: FitPlan, state: FitState, on_epoch: Callable[[int, FitState], None]) -> None:
        super().__init__()
        self.plan = plan
        self.state = state
        self.on_epoch = on_epoch

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        done = epoch + 1
        for key, value in (logs or {}).items():
            if isinstance(value, int | float):
                self.state.history.setdefault(key, []).append(float(value))
        watched = (logs or {}).get("val_loss")
        if watched is not None and float(watched) < self.state.best_loss:
            self.state.best_loss, self.state.best_epoch, self.state.stale_epochs = float(watched), done, 0
        elif watched is not None:
            self.state.stale_epochs += 1
            if self.plan.patience and self.state.stale_epochs >= self.plan.patience:
                log.info(
                    "early stop after epoch %d: validation loss %.4f has not beaten %.4f (epoch %d) for %d epochs",
                    done,
                    float(watched),
                    self.state.best_loss,
                    self.state.best_epoch,
                    self.state.stale_epochs,
                )
                self.state.stopped_early = True
                self.model.stop_training = True
        else:
            self.state.best_epoch = done  # no validation data: the latest is the best there is
        if self.plan.checkpoints is not None:
            save_checkpoint(self.plan.checkpoints, done, self.model, self.state.to_dict(), best=self.state.best_epoch)
        self.on_epoch(done, self.state)


class _Progress(keras.callbacks.Callback):  # type: ignore[misc]
    """Reports epoch, step, percent and the running loss every step (the reporter throttles what it saves), and logs
    them every ``plan.log_every`` steps and at each epoch's end (the fit runs with ``verbose=0``)."""

    def __init__(self, plan: FitPlan, report: Report, batch_size: int) -> None:
        super().__init__()
        self.plan = plan
        self.report = report
        self.batch_size = batch_size
        self.epoch = 0
        self.started = time.monotonic()
        self.last: dict[str, float] = {}  # the last epoch's metrics (validation loss...), shown beside the live loss

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch
        self.started = time.monotonic()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        step = batch + 1
        done = self.epoch * self.plan.steps_per_epoch + step
        total = self.plan.epochs * self.plan.steps_per_epoch
        rate = step * self.batch_size / max(time.monotonic() - self.started, 1e-6)
        loss = float((logs or {}).get("loss", float("nan")))
        if self.plan.log_every and step % self.plan.log_every == 0:
            log.info(
                "epoch %d step %d/%d loss %.4f (%.1f images/s)",
                self.epoch + 1,
                step,
                self.plan.steps_per_epoch,
                loss,
                rate,
            )
        self.report(
            progress=self.plan.share * done / total,
            stage="training",
            message=f"epoch {self.epoch + 1}/{self.plan.epochs} step {step}/{self.plan.steps_per_epoch} "
            f"loss {loss:.4f} ({rate:.1f} images/s)",
            epoch=self.epoch + 1,
            epochs=self.plan.epochs,
            step=step,
            steps=self.plan.steps_per_epoch,
            metrics={**self.last, "loss": round(loss, 5)},
        )

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        metrics = {k: round(float(v), 5) for k, v in (logs or {}).items() if isinstance(v, int | float)}
        self.last = metrics
        took = time.monotonic() - self.started
        log.info(
            "epoch %d/%d done in %.0f s (%.1f images/s): %s",
            epoch + 1,
            self.plan.epochs,
            took,
            self.plan.steps_per_epoch * self.batch_size / max(took, 1e-6),
            " ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items())),
        )
        self.report(
            progress=self.plan.share * (epoch + 1) / self.plan.epochs,
            stage="training",
            message=f"epoch {epoch + 1}/{self.plan.epochs} done",
            epoch=epoch + 1,
            epochs=self.plan.epochs,
            step=self.plan.steps_per_epoch,
            steps=self.plan.steps_per_epoch,
            metrics=metrics,
            force=True,
        )


def fit_run(
    model: keras.Model,
    train_data: tf.data.Dataset,
    validation_data: tf.data.Dataset | None,
    plan: FitPlan,
    *,
    state: FitState,
    initial_epoch: int,
    batch_size: int,
    report: Report = lambda **fields: None,
    on_epoch: Callable[[int, FitState], None] = lambda epoch, state: None,
    learning_rate: float | None = None,
) -> FitState:
    """Fit a compiled ``model`` from ``initial_epoch`` to ``plan.epochs`` (or an early stop); ``state`` is updated
    in place (and returned) with the history and the best epoch, and saved with every checkpoint.

    Raises:
        TrainingDiverged: the loss or validation loss became NaN or infinite (``learning_rate`` goes in the
            message).
    """
    if initial_epoch >= plan.epochs or state.stopped_early:
        log.info("nothing left to train: %d of %d epochs done", initial_epoch, plan.epochs)
        return state
    if validation_data is None and plan.patience:
        log.warning("no validation split: early stopping is off, every epoch is kept as the best so far")
    callbacks: list[keras.callbacks.Callback] = [
        StopOnNonFiniteLoss(learning_rate),  # first: before a NaN is reported or checkpointed
        _Progress(plan, report, batch_size),
        _Checkpointing(plan, state, on_epoch),
    ]
    if plan.tensorboard is not None:
        callbacks.append(
            keras.callbacks.TensorBoard(log_dir=str(plan.tensorboard), write_graph=False, update_freq="epoch")
        )
    model.fit(
        train_data,
        epochs=plan.epochs,
        steps_per_epoch=plan.steps_per_epoch,
        validation_data=validation_data,
        callbacks=callbacks,
        initial_epoch=initial_epoch,
        shuffle=False,  # the pipelines shuffle (with their seeds); Keras cannot shuffle a tf.data.Dataset
        verbose=0,
    )
    return state
