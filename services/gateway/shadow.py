"""Shadow canaries: run a sampled share of served detections through a second version too, and measure agreement.

A model has at most one version in shadow, put there by ``POST /v1/models/{name}/versions/{v}:shadow`` (with a
sample rate) or by the ``shadow_label`` version label in models.config (at ``shadow_default_sample_rate``). The
catalog keeps that version out of the default choice, so clients go on being served by the served version
(:meth:`~services.gateway.catalog.ModelCatalog.served_version`). After the dataplane has computed a served answer it
offers the request's prepared views here (:meth:`Shadows.offer`); for a sampled share, a background task submits
the same canvases through the shared batcher under the shadow version's key (so concurrent shadow runs share
batches), turns the outputs into detections with the request's own ``min_score``/``max_detections``, and compares
them with the served answer (:mod:`services.gateway.agreement`).

The served request never waits for a shadow run and never sees its failure: the task is only started, kept in a
set so it is not garbage-collected, and its errors and timeouts are counted as disagreement and logged (at most one
line per model per :data:`LOG_INTERVAL_SECONDS`). Shadow work is shed first: a sample is dropped (and counted in
``spotter_shadow_dropped_total``) while the gateway's admitted requests exceed ``shadow_max_load`` of the admission
limit, while ``shadow_max_concurrent`` runs are already in flight, while more than ``shadow_max_queued`` images
wait in the batch queue (by default any: with work-conserving batching an image waits only while every Predict slot
of its version is busy, so a wait means the model server has no time to spare), or while ``shadow_max_inflight_batches``
Predict calls (by default ``max_inflight_batches``, a version's worth of slots) are already at the model server.

Figures are per gateway process (each of ``SPOTTER_GATEWAY_WORKERS`` samples and counts on its own). With a
models.config (and ``rollout_writes_model_config``), what a shadow or a promotion decides is recorded there as version
labels (:mod:`services.gateway.config_labels`): the ``shadow_label`` on the shadowed version, the ``serving_label`` on
the promoted one, and the model server reloads it, so every process and pod, and the next start, agree. Without one,
a promotion pins the version in this process's catalog only (see docs/rollout.md).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from services import errors
from services.gateway import metrics
from services.gateway.admission import Admission
from services.gateway.agreement import RunningAgreement, compare
from services.gateway.batcher import Batcher, BatchKey, Outputs
from services.gateway.catalog import AVAILABLE, ModelCatalog
from services.gateway.config import GatewaySettings
from services.gateway.config_labels import ConfigLabels
from services.gateway.signatures import VersionInfo
from services.vision.letterbox import Letterbox
from services.vision.results import Detection

logger = logging.getLogger(__name__)

LOG_INTERVAL_SECONDS = 10.0
"""Least time between two WARNINGs about failing shadow runs of one model."""

ToDetections = Callable[[VersionInfo, list[Outputs]], list[Detection]]
"""Outputs of every view -> the answer's detections, with the served request's own thresholds and tile merging."""


@dataclass(frozen=True, slots=True)
class ShadowSample:
    """One served detection, as the shadow needs it: the views it was answered from and what it answered."""

    served: VersionInfo
    canvases: list[tuple[np.ndarray, Letterbox]]
    detections: list[Detection]
    served_seconds: float
    to_detections: ToDetections


@dataclass(slots=True)
class ShadowState:
    """One model's shadow version, how often it is sampled, and its running figures."""

    model: str
    version: int
    sample_rate: float
    source: Literal["api", "config"]
    started: float = field(default_factory=time.time)
    stats: RunningAgreement = field(default_factory=RunningAgreement)
    dropped: collections.Counter[str] = field(default_factory=collections.Counter)
    last_warning: float = -float("inf")


class Shadows:
    """The shadow versions of one gateway process, their sampling, runs and figures, and promotion."""

    def __init__(
        self, settings: GatewaySettings, catalog: ModelCatalog, batcher: Batcher, admission: Admission
    ) -> None:
        self._settings = settings
        self._catalog = catalog
        self._batcher = batcher
        self._admission = admission
        self._states: dict[str, ShadowState] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._random = random.Random()
        config = settings.model_config_file
        self._labels = (
            ConfigLabels(config, catalog.tfs) if config is not None and settings.rollout_writes_model_config else None
        )

    # -- the request path (cheap, synchronous, never raises for the shadow's sake) ----------------------------------

    def sampled(self, served: VersionInfo) -> ShadowState | None:
        """The shadow to run this served answer through, when the model has one and the sample hits."""
        state = self._state_of(served.model)
        if state is None or state.version == served.version or served.kind != "detector":
            return None
        if state.sample_rate < 1.0 and self._random.random() >= state.sample_rate:
            return None
        return state

    def offer(self, state: ShadowState, sample: ShadowSample) -> None:
        """Start a background shadow run for ``sample`` unless the gateway has no spare capacity (then count it)."""
        reason = self._shed_reason()
        if reason is not None:
            self._drop(state, reason)
            return
        task = asyncio.create_task(self._run(state, sample), name=f"shadow-{state.model}-{state.version}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _drop(self, state: ShadowState, reason: str) -> None:
        state.dropped[reason] += 1
        metrics.SHADOW_DROPPED.labels(state.model, str(state.version), reason).inc()

    def _shed_reason(self) -> str | None:
        if len(self._tasks) >= self._settings.shadow_max_concurrent:
            return "concurrency"
        if self._admission.admitted > self._settings.shadow_max_load * self._admission.limit:
            return "load"
        if self._batcher.pending > self._settings.shadow_max_queued:
            return "queue"
        busy = self._settings.shadow_max_inflight_batches or self._settings.max_inflight_batches
        if self._batcher.inflight_batches >= busy:
            return "busy"
        return None

    def _state_of(self, model: str) -> ShadowState | None:
        """The API's shadow of ``model``, else the one models.config labels (kept while the label says so)."""
        state = self._states.get(model)
        if state is not None and state.source == "api":
            return state
        labelled = self._catalog.version_labels(model).get(self._settings.shadow_label)
        if labelled is None:
            self._states.pop(model, None)
            return None
        if state is None or state.version != labelled:
            rate = self._settings.shadow_default_sample_rate
            state = self._states[model] = _new_state(model, labelled, rate, "config")
        return state

    # -- the background run ------------------------------------------------------------------------------------------

    async def _run(self, state: ShadowState, sample: ShadowSample) -> None:
        version = str(state.version)
        start = time.perf_counter()
        try:
            async with asyncio.timeout(self._settings.shadow_timeout_seconds):
                info = await self._catalog.version_info(state.model, state.version)
                if info.kind != "detector" or info.input_size != sample.served.input_size:
                    raise errors.InvalidParameter(
                        f"version {state.version} is a {info.kind} of input size {info.input_size}, the served "
                        f"version a {sample.served.kind} of {sample.served.input_size}: its views cannot be shared"
                    )
                outputs = await self._submit_all(info, [canvas for canvas, _ in sample.canvases])
                found = sample.to_detections(info, outputs)
        except errors.Overloaded:  # the gateway's queue shed it: not the shadow version's fault
            self._drop(state, "queue")
            return
        except Exception as err:  # anything else: a shadow's trouble is counted and logged, never raised
            self._failed(state, sample, err)
            return
        seconds = time.perf_counter() - start
        pair = compare(sample.detections, found)
        state.stats.add(pair, sample.served_seconds, seconds)
        metrics.SHADOW_AGREEMENT.labels(state.model, version).observe(pair.agreement)
        metrics.SHADOW_SECONDS.labels(state.model, version).observe(seconds)

    async def _submit_all(self, info: VersionInfo, images: list[np.ndarray]) -> list[Outputs]:
        key = BatchKey(info.model, info.version, info.input_name, info.max_batch)
        async with asyncio.TaskGroup() as group:  # the views ride in the same batches, as the served ones did
            tasks = [group.create_task(self._batcher.submit(key, image)) for image in images]
        return [task.result() for task in tasks]

    def _failed(self, state: ShadowState, sample: ShadowSample, err: BaseException) -> None:
        state.stats.add_failure(sample.served_seconds)
        metrics.SHADOW_AGREEMENT.labels(state.model, str(state.version)).observe(0.0)
        metrics.SHADOW_FAILURES.labels(state.model, str(state.version)).inc()
        now = time.monotonic()
        if now - state.last_warning < LOG_INTERVAL_SECONDS:
            return
        state.last_warning = now
        if isinstance(err, BaseExceptionGroup):
            err = err.exceptions[0]
        what = "timed out" if isinstance(err, TimeoutError) else getattr(err, "message", None) or repr(err)
        logger.warning(
            "shadow run of %s version %d failed (%s); counted as disagreement (%d failures in %d samples)",
            state.model,
            state.version,
            what,
            state.stats.failures,
            state.stats.samples,
        )

    async def close(self) -> None:
        """Cancel the shadow runs in flight (at shutdown, before the batcher closes)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- control ---------------------------------------------------------------------------------------------------

    async def start(self, model: str, version: int, sample_rate: float | None) -> ShadowState:
        """Put ``version`` of ``model`` in shadow (replacing the model's shadow, if any) with fresh figures.

        Raises:
            InvalidParameter: a sample rate outside [0, 1], or a version that is not a detector.
            ModelNotFound: unknown model or version.
            Conflict: the version is not AVAILABLE, is the only one served, or takes another input size.
        """
        rate = self._settings.shadow_default_sample_rate if sample_rate is None else sample_rate
        if not 0.0 <= rate <= 1.0:
            raise errors.InvalidParameter(
                f"sample_rate must be within [0, 1], not {rate}", details={"sample_rate": rate}
            )
        info = await self._available(model, version)
        if info.kind != "detector":
            raise errors.InvalidParameter(f"model {model!r} is a {info.kind}: only detectors can be shadowed")
        served = self._catalog.served_version(model, excluding=frozenset({version}))
        if served is None:
            raise errors.Conflict(
                f"version {version} is the only AVAILABLE version of model {model!r}: there is nothing to compare it "
                "with; load the version to serve beside it first"
            )
        served_info = await self._catalog.version_info(model, served)
        if served_info.input_size != info.input_size:
            raise errors.Conflict(
                f"version {version} takes {info.input_size}-pixel images, the served version {served} "
                f"{served_info.input_size}: a shadow must share the served version's views",
                details={"served_version": served},
            )
        await self._record(model, {self._settings.shadow_label: version})
        state = _new_state(model, version, rate, "api")
        self._states[model] = state
        self._catalog.set_shadowed(model, frozenset({version}))
        logger.info("%s version %d in shadow of version %d at sample rate %g", model, version, served, rate)
        return state

    async def stop(self, model: str, version: int) -> ShadowState:
        """Take ``version`` of ``model`` out of shadow (ModelNotFound-like 404 when it is not in shadow)."""
        state = self.get(model, version)
        await self._record(model, {self._settings.shadow_label: None})
        self._forget(model)
        return state

    def _forget(self, model: str) -> None:
        self._states.pop(model, None)
        self._catalog.set_shadowed(model, frozenset())

    async def _record(self, model: str, labels: dict[str, int | None]) -> bool:
        """Move ``labels`` in models.config and on the model server when the gateway keeps rollouts there (then
        the catalog takes the new labels at once); False when it does not (rollouts stay in this process)."""
        if self._labels is None:
            return False
        now = await self._labels.move(model, labels)
        self._catalog.set_version_labels(model, now)
        return True

    def get(self, model: str, version: int) -> ShadowState:
        """The shadow state of ``version`` of ``model``.

        Raises:
            NotFound: the version is not in shadow.
        """
        state = self._state_of(model)
        if state is None or state.version != version:
            current = f"version {state.version} is" if state is not None else "no version is"
            raise errors.NotFound(
                f"version {version} of model {model!r} is not in shadow ({current}); "
                f"POST /v1/models/{model}/versions/{version}:shadow first"
            )
        return state

    def report(self, state: ShadowState) -> dict[str, Any]:
        """The running figures of a shadow, with what a promotion needs, as JSON-ready values."""
        needed = self._settings.promote_min_samples
        return {
            "model": state.model,
            "version": state.version,
            "served_version": self._catalog.served_version(state.model),
            "sample_rate": state.sample_rate,
            "source": state.source,
            "started": state.started,
            **state.stats.summary(),
            "dropped": {reason: state.dropped[reason] for reason in metrics.SHADOW_DROP_REASONS},
            "promotion": {
                "min_samples": needed,
                "min_agreement": self._settings.promote_min_agreement,
                "ready": self._refusal(state) is None,
            },
        }

    async def promote(self, model: str, version: int, *, force: bool, who: str) -> dict[str, Any]:
        """Serve ``version`` to requests naming no version, if its shadow agreed enough (or ``force``).

        Raises:
            NotFound: the version is not in shadow (without ``force``), or unknown.
            Conflict: too few samples, or agreement below the threshold (the answer has the numbers).
        """
        state = self._state_of(model)
        shadowing = state is not None and state.version == version
        if not force:
            refusal = self._refusal(self.get(model, version))
            if refusal is not None:
                assert state is not None
                raise errors.Conflict(refusal, details=self.report(state))
        await self._available(model, version)
        previous = self._catalog.served_version(model)
        figures = state.stats.summary() if state is not None and shadowing else None
        label = self._settings.serving_label
        moved: dict[str, int | None] = {label: version} if label else {}
        if shadowing:
            moved[self._settings.shadow_label] = None
        recorded = bool(moved) and await self._record(model, moved) and bool(label)
        if not recorded:  # no models.config to keep it in (or no serving label): this process serves it
            self._catalog.pin_default(model, version)
        if shadowing:
            self._forget(model)
        agreement = figures["agreement"]["mean"] if figures else None
        samples = figures["samples"] if figures else 0
        where = (
            f"label {label!r} moved in {self._settings.model_config_file}"
            if recorded
            else "pinned in this gateway process only, lost on restart"
        )
        logger.info(
            "promoted %s version %s -> %d by %s (force=%s, %d samples, agreement %s; %s)",
            model,
            previous,
            version,
            who,
            force,
            samples,
            "n/a" if agreement is None else f"{agreement:.3f}",
            where,
            extra={
                "event": "promote",
                "model": model,
                "version": version,
                "previous_version": previous,
                "by": who,
                "force": force,
                "samples": samples,
                "agreement": agreement,
                "recorded": recorded,
            },
        )
        return {
            "model": model,
            "served_version": version,
            "previous_version": previous,
            "force": force,
            "scope": "model_config" if recorded else "process",
        }

    def _refusal(self, state: ShadowState) -> str | None:
        """Why ``state``'s version may not be promoted without force (None: it may)."""
        stats, needed = state.stats, self._settings.promote_min_samples
        where = f"version {state.version} of model {state.model!r}"
        if stats.samples < needed:
            return (
                f"{where} has {stats.samples} shadow samples; promotion needs {needed} "
                f"({needed - stats.samples} more), or force=true"
            )
        threshold = self._settings.promote_min_agreement
        if stats.mean < threshold:
            low, high = stats.mean_interval()
            return (
                f"{where} agrees {stats.mean:.3f} (95% CI {low:.3f}-{high:.3f}) with the served version over "
                f"{stats.samples} samples, below the {threshold:g} promotion needs; fix the model, or force=true"
            )
        return None

    async def _available(self, model: str, version: int) -> VersionInfo:
        """``version``'s info when it is AVAILABLE (a version still loading is a 409, not a 503)."""
        try:
            return await self._catalog.resolve(model, version=version)
        except errors.Unavailable as err:
            state = self._catalog.version_states(model).get(version, "unknown")
            raise errors.Conflict(
                f"version {version} of model {model!r} is not loaded ({state}, not {AVAILABLE}): {err.message}; "
                "wait until it is AVAILABLE",
                details={"state": state},
            ) from err


def _new_state(model: str, version: int, rate: float, source: Literal["api", "config"]) -> ShadowState:
    """A fresh shadow state; its series show from the start, at 0 (so rates over them start from there)."""
    for series in (metrics.SHADOW_AGREEMENT, metrics.SHADOW_SECONDS, metrics.SHADOW_FAILURES):
        series.labels(model, str(version))
    for reason in metrics.SHADOW_DROP_REASONS:
        metrics.SHADOW_DROPPED.labels(model, str(version), reason)
    return ShadowState(model, version, rate, source)
