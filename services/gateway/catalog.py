"""What the gateway knows about the models it serves, kept fresh from the model server.

Per model: the state of each version (GetModelStatus), polled every ``catalog_refresh_seconds`` and on a miss. Per
(model, version): what it is and how to feed it (GetModelMetadata: kind, input name and size, outputs) and its labels
(the ``labels`` signature in either form, else a configured or conventional ``label_map.pbtxt``, else
``class_<id>``), fetched once and cached (a version's signatures and labels never change). Concurrent misses for the
same thing share one call.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np

from services import errors
from services.gateway import metrics
from services.gateway.config import GatewaySettings
from services.gateway.modelconfig import configured_models
from services.gateway.signatures import Kind, VersionInfo, describe_signature, unusable
from services.gateway.tfs import SERVING_DEFAULT, TfsClient
from services.gen.tfs import get_model_status_pb2, meta_graph_pb2
from services.model_repository import version_metadata
from services.vision.labelmap import load_label_map
from services.vision.tiling import ModelViews

logger = logging.getLogger(__name__)

AVAILABLE = "AVAILABLE"
_MAX_MISSING = 10_000
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class VersionDescription:
    """A version as ``GET /v1/models/{name}`` shows it (kind, size and labels once it is AVAILABLE)."""

    version: int
    state: str
    kind: Kind | None = None
    input_size: int | None = None
    labels: Mapping[int, str] | None = None
    views: ModelViews | None = None


@dataclass(frozen=True, slots=True)
class ModelDescription:
    name: str
    versions: list[VersionDescription]
    version_labels: dict[str, int]


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reason: str
    model_server_up: bool
    models: dict[str, bool]  # model -> has an AVAILABLE version


@dataclass(slots=True)
class _Model:
    name: str
    versions: dict[int, str] = field(default_factory=dict)  # version -> state name
    version_labels: dict[str, int] = field(default_factory=dict)
    configured: bool = False  # named by config / the model root (kept even while the server does not know it)

    def available(self) -> list[int]:
        return sorted(v for v, state in self.versions.items() if state == AVAILABLE)


class ModelCatalog:
    """Model states and per-version info, refreshed in the background and on a miss."""

    def __init__(self, tfs: TfsClient, settings: GatewaySettings) -> None:
        self._tfs = tfs
        self._settings = settings
        self._models: dict[str, _Model] = {}
        self._infos: dict[tuple[str, int], VersionInfo] = {}
        self._label_versions: dict[tuple[str, str], int] = {}  # label -> version, as TFS resolved it
        self._flights: dict[object, asyncio.Future[Any]] = {}
        # Names the model server said it does not know, and when: a client repeating a made-up name is answered
        # from here until the next refresh period instead of costing a model-server call each time.
        self._missing: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        # Which version a request that names none gets (services/gateway/shadow.py sets these): a version a
        # promotion pinned (without a models.config), else the serving label's, else the latest AVAILABLE one that
        # is not in shadow.
        self._pinned: dict[str, int] = {}
        self._shadowed: dict[str, frozenset[int]] = {}
        self.model_server_up = False
        self.last_refresh = 0.0

    async def start(self) -> None:
        """Refresh once (a model server that is down is logged, not fatal) and keep refreshing in the background."""
        try:
            await self.refresh()
        except errors.SpotterError as err:
            logger.warning("first model catalog refresh failed: %s", err.message)
        self._task = asyncio.create_task(self._refresh_forever(), name="catalog-refresh")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def names(self) -> list[str]:
        return sorted(name for name, model in self._models.items() if model.configured or model.versions)

    # -- refreshing ------------------------------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Re-read the configured models and poll the status of every known one (concurrent callers share it)."""
        await self._single_flight("refresh-all", self._refresh_all)

    async def _refresh_all(self) -> None:
        configured = await asyncio.to_thread(
            configured_models, self._settings.model_config_file, self._settings.model_root
        )
        seen = set()
        for entry in configured:
            model = self._models.setdefault(entry.name, _Model(entry.name))
            model.configured = True
            model.version_labels = dict(entry.version_labels)
            seen.add(entry.name)
        for name, model in self._models.items():
            if name not in seen:
                model.configured = False
        self._label_versions.clear()
        names = list(self._models)
        results = await asyncio.gather(*(self.refresh_model(n) for n in names), return_exceptions=True)
        server_up = False  # up once any call is answered (NOT_FOUND is an answer too)
        for name, result in zip(names, results, strict=True):
            if isinstance(result, errors.Unavailable | errors.DeadlineExceeded):
                continue
            if isinstance(result, BaseException) and not isinstance(result, errors.SpotterError):
                logger.error("refreshing model %s failed", name, exc_info=result)
                continue
            server_up = True
        self.model_server_up = server_up
        metrics.MODEL_SERVER_UP.set(1 if self.model_server_up else 0)
        self.last_refresh = time.monotonic()

    async def refresh_model(self, name: str) -> None:
        """Poll one model's version states now.

        Raises:
            ModelNotFound: when the model server does not know the model.
            Unavailable, DeadlineExceeded: when the model server cannot answer.
        """
        await self._single_flight(("status", name), lambda: self._poll_status(name))

    async def _poll_status(self, name: str) -> None:
        try:
            statuses = await self._tfs.model_status(name)
        except errors.NotFound:
            model = self._models.get(name)
            if model is not None:
                model.versions.clear()
                if not model.configured:
                    del self._models[name]
            if len(self._missing) >= _MAX_MISSING:
                self._missing.clear()
            self._missing[name] = time.monotonic()
            self._set_up(name, False)
            raise _not_found(name) from None
        except errors.SpotterError:
            self._set_up(name, False)
            raise
        self._missing.pop(name, None)
        model = self._models.setdefault(name, _Model(name))
        model.versions = {int(s.version): _state_name(s.state) for s in statuses}
        for key in [k for k in self._infos if k[0] == name and k[1] not in model.versions]:
            del self._infos[key]
        metrics.set_known_models([name])
        self._set_up(name, bool(model.available()))

    def _set_up(self, name: str, up: bool) -> None:
        if up or name in self._models:
            metrics.MODEL_UP.labels(name).set(1 if up else 0)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._settings.catalog_refresh_seconds)
            try:
                await self.refresh()
            except Exception:  # the loop must outlive any one failure
                logger.exception("model catalog refresh failed")

    # -- resolving -------------------------------------------------------------------------------------------------

    async def resolve(self, name: str, *, version: int | None = None, label: str | None = None) -> VersionInfo:
        """The version a request means (a number, a label, or the latest AVAILABLE one) and how to use it.

        Raises:
            ModelNotFound: unknown model, version or label.
            Unavailable: the model is known but no matching version is AVAILABLE (loading), or the server is down.
        """
        if label is not None:
            version = await self._version_for_label(name, label)
        model = self._models.get(name)
        if (
            model is None
            and time.monotonic() - self._missing.get(name, -math.inf) < self._settings.catalog_refresh_seconds
        ):
            raise _not_found(name)
        if model is None or not _has(model, version):
            await self.refresh_model(name)
            model = self._models[name]
        if version is None:
            available = model.available()
            if not available:
                states = ", ".join(f"{v}: {s}" for v, s in sorted(model.versions.items())) or "no versions"
                raise errors.Unavailable(
                    f"model {name!r} has no AVAILABLE version ({states})",
                    retry_after=self._settings.retry_after_seconds,
                )
            version = self._default_version(model, available)
        state = model.versions.get(version)
        if state is None or state not in (AVAILABLE, "START", "LOADING"):
            known = ", ".join(str(v) for v in model.available()) or "none"
            raise errors.ModelNotFound(f"model {name!r} has no version {version} (available: {known})")
        if state != AVAILABLE:
            raise errors.Unavailable(
                f"version {version} of model {name!r} is {state}", retry_after=self._settings.retry_after_seconds
            )
        return await self.version_info(name, version)

    def _default_version(self, model: _Model, available: list[int]) -> int:
        """The served version among ``available`` (not empty): the pinned one, else the serving label's, else the
        latest not in shadow (a shadow that is the only AVAILABLE version is served rather than nothing)."""
        return self.served_version(model.name) or available[-1]

    def served_version(self, name: str, *, excluding: frozenset[int] = frozenset()) -> int | None:
        """The version a request naming none gets, from the last poll: the pinned one when AVAILABLE, else the
        ``serving_label``'s, else the latest AVAILABLE one (the last two neither in shadow nor in ``excluding``);
        None when there is none."""
        model = self._models.get(name)
        if model is None:
            return None
        available = model.available()
        pinned = self._pinned.get(name)
        if pinned in available and pinned not in excluding:
            return pinned
        left = self.shadowed_versions(name) | excluding
        label = self._settings.serving_label
        labelled = model.version_labels.get(label) if label else None
        if labelled in available and labelled not in left:  # models.config's serving label (a recorded promotion)
            return labelled
        served = [v for v in available if v not in left]
        return served[-1] if served else None

    def shadowed_versions(self, name: str) -> frozenset[int]:
        """Versions of ``name`` in shadow: set through the API, or labelled ``shadow_label`` in models.config."""
        shadowed = self._shadowed.get(name, frozenset())
        model = self._models.get(name)
        labelled = model.version_labels.get(self._settings.shadow_label) if model is not None else None
        return shadowed | {labelled} if labelled is not None else shadowed

    def set_shadowed(self, name: str, versions: frozenset[int]) -> None:
        """Keep ``versions`` of ``name`` out of the default choice (the API's shadows)."""
        if versions:
            self._shadowed[name] = versions
        else:
            self._shadowed.pop(name, None)

    def pin_default(self, name: str, version: int) -> None:
        """Serve ``version`` to requests for ``name`` that name no version or label (a promotion)."""
        self._pinned[name] = version

    def set_version_labels(self, name: str, labels: Mapping[str, int]) -> None:
        """Take ``labels`` as ``name``'s models.config labels now (just written there), not at the next refresh."""
        model = self._models.get(name)
        if model is not None:
            model.version_labels = dict(labels)

    @property
    def tfs(self) -> TfsClient:
        """The model server client the catalog polls (a rollout that reloads the server's config uses it too)."""
        return self._tfs

    def version_labels(self, name: str) -> dict[str, int]:
        """The version labels models.config gives ``name`` (empty when none or unknown)."""
        model = self._models.get(name)
        return dict(model.version_labels) if model is not None else {}

    def version_states(self, name: str) -> dict[int, str]:
        """The last polled state of each version of ``name`` (empty when unknown)."""
        model = self._models.get(name)
        return dict(model.versions) if model is not None else {}

    async def _version_for_label(self, name: str, label: str) -> int:
        model = self._models.get(name)
        if model is not None and label in model.version_labels:
            return model.version_labels[label]
        cached = self._label_versions.get((name, label))
        if cached is not None:
            return cached
        try:
            meta = await self._tfs.model_metadata(name, label=label)
        except (errors.NotFound, errors.InvalidParameter) as err:
            raise errors.ModelNotFound(f"model {name!r} has no version labelled {label!r}") from err
        self._label_versions[(name, label)] = meta.version
        return meta.version

    async def version_info(self, name: str, version: int) -> VersionInfo:
        """Kind, input and labels of one version, fetched once and cached."""
        info = self._infos.get((name, version))
        if info is None:
            info = await self._single_flight(("info", name, version), lambda: self._load_info(name, version))
            self._infos[(name, version)] = info
        return info

    async def _load_info(self, name: str, version: int) -> VersionInfo:
        meta = await self._tfs.model_metadata(name, version=version)
        signature = meta.signatures.get(SERVING_DEFAULT)
        if signature is None:
            return unusable(name, version, f"it has no {SERVING_DEFAULT!r} signature")
        info = describe_signature(name, version, signature, self._settings.dynamic_input_size)
        if info.kind == "unknown":
            return info
        labels = await self._labels(name, version, meta.signatures.get("labels"))
        views = await asyncio.to_thread(self._views, name, version)
        return VersionInfo(
            model=info.model,
            version=info.version,
            kind=info.kind,
            input_name=info.input_name,
            input_size=info.input_size,
            max_batch=info.max_batch,
            outputs=info.outputs,
            labels=labels,
            views=views,
        )

    def _views(self, name: str, version: int) -> ModelViews:
        """How a version sees an image, from its ``assets.extra/spotter.json`` under the model root; ``whole`` when
        it has none (a foreign model) or the file cannot be read (a gateway without the model root's files)."""
        try:
            return ModelViews.from_metadata(version_metadata(self._settings.model_root, name, version))
        except (OSError, ValueError) as err:
            logger.warning("cannot read spotter.json of %s version %d (%s): taking views 'whole'", name, version, err)
            return ModelViews()

    async def _labels(
        self, name: str, version: int, signature: meta_graph_pb2.SignatureDef | None
    ) -> Mapping[int, str]:
        """A version's labels: its ``labels`` signature, else (missing, or its call fails) the configured or
        conventional label map, else none (answers then say ``class_<id>``)."""
        if signature is not None:
            try:
                return await self._labels_from_signature(name, version, signature)
            except (errors.Unavailable, errors.DeadlineExceeded, errors.Overloaded):
                raise  # the server, not the model: nothing is cached, the next request asks again
            except errors.SpotterError as err:
                fallback = self._label_map_path(name)
                logger.warning(
                    "the labels signature of %s version %d failed (%s); using %s",
                    name,
                    version,
                    err.message,
                    fallback or "class_<id> names",
                )
        path = self._label_map_path(name)
        if path is None:
            return {}
        try:
            label_map = await asyncio.to_thread(load_label_map, path)
        except (OSError, errors.SpotterError) as err:
            # The gateway's configuration is wrong, not the request: 502, and retried on the next request.
            detail = err.message if isinstance(err, errors.SpotterError) else str(err)
            raise errors.UpstreamError(f"the label map {path} for model {name!r} cannot be read: {detail}") from err
        return dict(label_map.names)

    async def _labels_from_signature(
        self, name: str, version: int, signature: meta_graph_pb2.SignatureDef
    ) -> Mapping[int, str]:
        """Call a ``labels`` signature in either form of the contract (docs/architecture.md): with an input (one row
        per element, as TFS's batching needs: send ``[0]``, read row 0) or, from older exports, without one."""
        inputs: dict[str, np.ndarray] = {}
        if signature.inputs:
            if len(signature.inputs) != 1:
                raise errors.UpstreamError(f"the labels signature takes {sorted(signature.inputs)}, not one input")
            inputs[next(iter(signature.inputs))] = np.zeros([1], np.int32)
        out = await self._tfs.predict(name, inputs, version=version, signature="labels")
        ids, names = out.get("ids"), out.get("names")
        if ids is None or names is None:
            raise errors.UpstreamError(f"the labels signature of {name} version {version} lacks ids or names")
        if inputs:
            if ids.ndim != 2 or names.ndim != 2 or len(ids) < 1 or len(names) < 1:
                raise errors.UpstreamError(f"the labels signature of {name} version {version} answered no rows")
            ids, names = ids[0], names[0]
        if ids.shape != names.shape or ids.ndim != 1:
            raise errors.UpstreamError(
                f"the labels signature of {name} version {version} answered mismatched ids and names"
            )
        return {
            int(i): (n.decode() if isinstance(n, bytes) else str(n))
            for i, n in zip(ids.tolist(), names.tolist(), strict=True)
        }

    def _label_map_path(self, name: str) -> Path | None:
        configured = self._settings.label_maps.get(name)
        if configured is not None:
            return configured
        conventional = self._settings.model_root / name / "label_map.pbtxt"
        return conventional if conventional.is_file() else None

    # -- describing ------------------------------------------------------------------------------------------------

    async def describe(self, name: str) -> ModelDescription:
        """A model's versions with their states, and kind/size/labels for the AVAILABLE ones."""
        await self.refresh_model(name)
        model = self._models[name]
        versions = []
        for version, state in sorted(model.versions.items()):
            if state != AVAILABLE:
                versions.append(VersionDescription(version, state))
                continue
            try:
                info = await self.version_info(name, version)
            except errors.SpotterError as err:
                logger.warning("cannot describe %s version %d: %s", name, version, err.message)
                versions.append(VersionDescription(version, state))
                continue
            versions.append(VersionDescription(version, state, info.kind, info.input_size, info.labels, info.views))
        return ModelDescription(name, versions, dict(model.version_labels))

    async def describe_all(self) -> list[ModelDescription]:
        """Every known model (a model the server does not know right now shows with no versions)."""
        results = []
        for name in self.names():
            try:
                results.append(await self.describe(name))
            except errors.NotFound:
                model = self._models.get(name)
                if model is not None:
                    results.append(ModelDescription(name, [], dict(model.version_labels)))
        return results

    async def readiness(self) -> Readiness:
        """Ready when the model server answers and at least one model has an AVAILABLE version (polled now)."""
        await self.refresh()
        models = {name: bool(self._models[name].available()) for name in self.names()}
        if not self.model_server_up:
            reason = f"the model server at {self._tfs.target} does not answer"
            if not models:
                reason = "no models are configured or found under the model root"
            return Readiness(False, reason, False, models)
        if not any(models.values()):
            return Readiness(False, "no model has an AVAILABLE version yet", True, models)
        return Readiness(True, "ready", True, models)

    # -- helpers ---------------------------------------------------------------------------------------------------

    async def _single_flight(self, key: object, work: Callable[[], Awaitable[_T]]) -> _T:
        """Run ``work`` once for every concurrent caller that asks for the same ``key``."""
        flight = self._flights.get(key)
        if flight is None:
            started = asyncio.ensure_future(work())
            started.add_done_callback(lambda _: self._flights.pop(key, None))
            self._flights[key] = flight = started
        # shield: one caller that goes away must not cancel the call the others wait for.
        return cast(_T, await asyncio.shield(flight))


def _not_found(name: str) -> errors.ModelNotFound:
    return errors.ModelNotFound(f"no model named {name!r}; GET /v1/models lists them")


def _has(model: _Model, version: int | None) -> bool:
    if version is None:
        return bool(model.available())
    return model.versions.get(version) == AVAILABLE


def _state_name(state: int) -> str:
    try:
        return str(get_model_status_pb2.ModelVersionStatus.State.Name(state))
    except ValueError:
        return "UNKNOWN"
