"""The model server's settings, and the models it serves: from a TFS ``models.config`` or from the model root.

``models.config`` is TensorFlow Serving's own text proto (``ModelServerConfig`` with a ``model_config_list``), read
with the official ``tensorflow_serving.config`` messages so that a file TFS accepts means the same here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from services.settings import CommonSettings

log = logging.getLogger(__name__)

TENSORFLOW_PLATFORM = "tensorflow"


class ModelServerSettings(CommonSettings):
    """Settings of ``spotter modelserver`` (environment variables ``SPOTTER_*``; CLI flags override them)."""

    model_config_file: Path | None = None
    """TFS ``models.config``; without it every sub-folder of ``model_root`` is a model."""
    modelserver_host: str = "0.0.0.0"
    modelserver_grpc_port: int = Field(8500, ge=0, le=65535)
    modelserver_rest_port: int = Field(8501, ge=0, le=65535)
    modelserver_poll_seconds: float = Field(1.0, gt=0)
    """How often the model folders are re-scanned (TFS's ``--file_system_poll_wait_seconds``)."""
    modelserver_num_versions: int = Field(2, ge=1)
    """Versions kept loaded per model when no config names a policy: the latest and the one before, for rollback."""
    modelserver_grpc_max_message_bytes: int = Field(256 * 1024 * 1024, ge=4 * 1024 * 1024)
    modelserver_grpc_workers: int = Field(16, ge=1)
    modelserver_load_threads: int = Field(2, ge=1)
    """Versions loaded (and warmed up) at once, in the background."""
    modelserver_warmup_iterations: int = Field(1, ge=1)
    """How many times each warmup record is replayed (TFS's ``num_request_iterations``, default 1)."""
    model_config_file_poll_wait_seconds: float = Field(0.0, ge=0)
    """Re-read ``models.config`` this often (TFS's ``--model_config_file_poll_wait_seconds``); 0 reads it once."""
    modelserver_enable_batching: bool = False
    """Batch runs of concurrent requests in the server (TFS's ``--enable_batching``)."""
    modelserver_batching_parameters_file: Path | None = None
    """TFS's text-format ``BatchingParameters`` (``--batching_parameters_file``); TFS's defaults without it."""
    modelserver_strict_tfs_loading: bool = True
    """Fail versions TFS would load but could not run (variables its saver doesn't restore, as in Keras 3 models
    saved inside a ``tf.Module`` with ``tf.saved_model.save``); ``False`` serves them through ``tf.saved_model.load``
    with a warning (for exports made before the exporter's fix: re-export them with ``services.training.reexport``)."""


class ConfigError(ValueError):
    """The ``models.config`` file is missing, malformed, or asks for something this server can't do."""


@dataclass(frozen=True)
class VersionPolicy:
    """Which versions found on disk are loaded (TFS's ``ServableVersionPolicy``)."""

    kind: Literal["latest", "all", "specific"] = "latest"
    num_versions: int = 1
    versions: frozenset[int] = frozenset()

    def select(self, found: Iterable[int]) -> set[int]:
        """The versions to load, among those found on disk."""
        found = set(found)
        if self.kind == "all":
            return found
        if self.kind == "specific":
            return found & self.versions
        return set(sorted(found, reverse=True)[: max(1, self.num_versions)])


@dataclass(frozen=True)
class ModelSource:
    """One model: its name, the folder holding its version folders, its version policy and labels."""

    name: str
    base_path: Path
    policy: VersionPolicy
    labels: Mapping[str, int] = field(default_factory=dict)


def discover_models(model_root: Path, policy: VersionPolicy) -> list[ModelSource]:
    """Every sub-folder of ``model_root`` is a model (hidden ones, e.g. ``.tmp-*`` being written, are not)."""
    try:
        children = sorted(model_root.iterdir())
    except OSError:
        return []
    return [
        ModelSource(name=child.name, base_path=child, policy=policy)
        for child in children
        if child.is_dir() and not child.name.startswith(".")
    ]


def read_model_config(path: Path, default_policy: VersionPolicy) -> list[ModelSource]:
    """Parse a TFS ``models.config``; ``base_path`` may be absolute or relative to the file's folder.

    Raises:
        ConfigError: the file can't be read or parsed, or names a platform other than ``tensorflow``, a model
            twice, or a custom model config.
    """
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the model config file {path}: {exc}") from exc
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise ConfigError(f"{path} is not a valid ModelServerConfig text proto: {exc}") from exc
    return sources_from_config(config, path.parent, default_policy, origin=str(path))


def sources_from_config(
    config: Any, base_dir: Path, default_policy: VersionPolicy, *, origin: str
) -> list[ModelSource]:
    """The models of a ``ModelServerConfig`` message; relative ``base_path`` values are relative to ``base_dir``.

    Raises:
        ConfigError: a custom model config, a model without a name or base path, listed twice, or on a platform
            other than ``tensorflow`` (``origin`` names the config in the message).
    """
    if config.WhichOneof("config") == "custom_model_config":
        raise ConfigError(f"{origin}: custom_model_config is not supported; use model_config_list")
    sources: list[ModelSource] = []
    for entry in config.model_config_list.config:
        if not entry.name:
            raise ConfigError(f"{origin}: a model config entry has no name")
        if any(source.name == entry.name for source in sources):
            raise ConfigError(f"{origin}: Illegal to list model {entry.name} multiple times in config list")
        if entry.model_platform != TENSORFLOW_PLATFORM:
            raise ConfigError(
                f"{origin}: Model {entry.name} requests unsupported platform {entry.model_platform or '(none)'}; "
                f'set model_platform: "{TENSORFLOW_PLATFORM}"'
            )
        if not entry.base_path:
            raise ConfigError(f"{origin}: model {entry.name} has no base_path")
        base_path = Path(entry.base_path)
        if not base_path.is_absolute():
            base_path = base_dir / base_path
        sources.append(
            ModelSource(
                name=entry.name,
                base_path=base_path,
                policy=_policy(entry.model_version_policy, default_policy),
                labels=dict(entry.version_labels),
            )
        )
    return sources


class ConfiguredModels:
    """The models of ``models.config``, re-read every ``poll_seconds`` (TFS's
    ``--model_config_file_poll_wait_seconds``; 0: read once) or replaced by ``HandleReloadConfigRequest``.

    Called by the repository on each of its polls. A file that has become invalid is logged and the last good
    config kept, as TFS keeps serving its last config.
    """

    def __init__(self, path: Path, default_policy: VersionPolicy, *, poll_seconds: float = 0.0) -> None:
        self.path = path
        self.default_policy = default_policy
        self._poll_seconds = poll_seconds
        self._lock = threading.Lock()
        self._sources = read_model_config(path, default_policy)  # a bad file at start-up stops the start
        self._text = path.read_text()
        self._read_at = time.monotonic()

    def __call__(self) -> list[ModelSource]:
        if self._poll_seconds > 0 and time.monotonic() - self._read_at >= self._poll_seconds:
            self._reread()
        return self._sources

    def _reread(self) -> None:
        with self._lock:
            self._read_at = time.monotonic()
            try:
                text = self.path.read_text()
                if text == self._text:
                    return
                sources = read_model_config(self.path, self.default_policy)
            except (OSError, ConfigError) as exc:
                log.error("Keeping the last good model config: re-reading %s failed: %s", self.path, exc)
                return
            self._text, self._sources = text, sources
            log.info("Re-read %s: %d model(s)", self.path, len(sources))

    def replace(self, config: Any) -> list[ModelSource]:
        """Serve the models of a ``ModelServerConfig`` message from now on (``HandleReloadConfigRequest``).

        Raises:
            ConfigError: the config is invalid (the current one stays).
        """
        sources = sources_from_config(config, self.path.parent, self.default_policy, origin="ReloadConfigRequest")
        with self._lock:
            self._sources = sources
        log.info("Reloaded the model config from a ReloadConfigRequest: %d model(s)", len(sources))
        return sources


def _policy(proto: object, default: VersionPolicy) -> VersionPolicy:
    choice = proto.WhichOneof("policy_choice")  # type: ignore[attr-defined]
    if choice == "all":
        return VersionPolicy("all")
    if choice == "specific":
        return VersionPolicy("specific", versions=frozenset(proto.specific.versions))  # type: ignore[attr-defined]
    if choice == "latest":
        # TFS: "Number of latest versions to serve. (The default is 1.)"
        return VersionPolicy("latest", num_versions=proto.latest.num_versions or 1)  # type: ignore[attr-defined]
    return default


def model_sources(settings: ModelServerSettings) -> Callable[[], list[ModelSource]]:
    """What the repository polls: the models of ``models.config`` (read now, so a bad file stops the start, and
    re-read as configured), or every folder of the model root (re-listed on every poll).

    Raises:
        ConfigError: the config file is invalid.
    """
    default = VersionPolicy("latest", num_versions=settings.modelserver_num_versions)
    config_file = settings.model_config_file
    if config_file is not None:
        configured = ConfiguredModels(config_file, default, poll_seconds=settings.model_config_file_poll_wait_seconds)
        log.info("Serving %d model(s) from %s", len(configured()), config_file)
        return configured
    root = settings.model_root
    if not root.is_dir():
        log.warning("The model root %s does not exist (yet); it is polled until it does", root)
    return lambda: discover_models(root, default)
