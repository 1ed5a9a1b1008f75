"""The model repository: which versions exist on disk, which are loaded, and the state of each.

A poll thread re-scans the model folders every ``poll_seconds`` (TFS's file-system storage path source). New
versions that the version policy wants are loaded in a thread pool, never on the serving path, and go
START → LOADING → AVAILABLE (or END with the load's error, as TFS reports it). Versions that the policy no longer
wants go UNLOADING → END once another wanted version is available or none is still loading, so a model never goes
dark while its next version loads. A version that failed is not retried until its ``saved_model.pb`` changes.

Requests read an immutable snapshot swapped in on every change: lookups are dictionary reads, with no lock held.
This module does not import TensorFlow: the loader is passed in.
"""

from __future__ import annotations

import enum
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import grpc

from services.modelserver.config import ModelSource
from services.modelserver.status import ServingError, invalid_argument, not_found

log = logging.getLogger(__name__)

T = TypeVar("T")

SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
_VERSION_NAME = re.compile(r"[0-9]{1,18}")


class State(enum.IntEnum):
    """A version's state, numbered like TFS's ``ModelVersionStatus.State``."""

    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


@dataclass(frozen=True)
class VersionStatus:
    """What ``GetModelStatus`` reports for one version."""

    version: int
    state: State
    error_code: grpc.StatusCode = grpc.StatusCode.OK
    error_message: str = ""


@dataclass(frozen=True)
class Snapshot(Generic[T]):
    """An immutable view of the repository for requests: available servables, labels and statuses."""

    latest: Mapping[str, T] = field(default_factory=dict)
    available: Mapping[str, Mapping[int, T]] = field(default_factory=dict)
    labels: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    status: Mapping[str, tuple[VersionStatus, ...]] = field(default_factory=dict)


@dataclass
class _Record(Generic[T]):
    version: int
    path: Path
    state: State = State.START
    servable: T | None = None
    error: ServingError | None = None
    fingerprint: tuple[int, ...] = ()
    aspired: bool = True


def scan_versions(base_path: Path) -> dict[int, Path]:
    """The version folders under ``base_path``: integer names holding a ``saved_model.pb``.

    Anything else (``.tmp-*`` being written, ``examples/``, ``label_map.pbtxt``) is not a version, and neither is an
    integer folder without its ``saved_model.pb`` yet.
    """
    versions: dict[int, Path] = {}
    try:
        children = sorted(base_path.iterdir())
    except OSError:
        return versions
    for child in children:
        if not _VERSION_NAME.fullmatch(child.name) or not child.is_dir():
            continue
        if any((child / name).is_file() for name in SAVED_MODEL_FILES):
            versions.setdefault(int(child.name), child)
    return versions


def _fingerprint(path: Path) -> tuple[int, ...]:
    for name in SAVED_MODEL_FILES:
        try:
            stat = (path / name).stat()
        except OSError:
            continue
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    return ()


class ModelRepository(Generic[T]):
    """Loads, serves and unloads model versions as the folders change.

    Args:
        sources: called on every poll; the models to serve (from ``models.config`` or the model root).
        loader: loads one version, ``loader(name, version, path)``; runs in a background thread and raises on
            failure (a :class:`ServingError` keeps its code; anything else is reported as UNKNOWN).
        poll_seconds: the interval between scans.
        load_threads: versions loaded at once.
    """

    def __init__(
        self,
        sources: Callable[[], list[ModelSource]],
        loader: Callable[[str, int, Path], T],
        *,
        poll_seconds: float = 1.0,
        load_threads: int = 2,
    ) -> None:
        self._sources = sources
        self._loader = loader
        self._poll_seconds = poll_seconds
        self._records: dict[str, dict[int, _Record[T]]] = {}
        self._wanted_labels: dict[str, Mapping[str, int]] = {}  # as configured
        self._labels: dict[str, Mapping[str, int]] = {}  # as served (see _effective_labels)
        self._changed = threading.Condition()
        self._label_waits: set[tuple[str, str, int]] = set()  # label moves already logged as waiting
        self._lock = threading.RLock()
        self._snapshot: Snapshot[T] = Snapshot()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=load_threads, thread_name_prefix="model-load")
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start polling (the first scan happens at once, in the poll thread)."""
        self._thread = threading.Thread(target=self._run, name="model-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling; loads not yet started are cancelled."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                log.exception("polling the model repository failed")
            self._stop.wait(self._poll_seconds)

    # --- requests ---------------------------------------------------------------------------------------------

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> T:
        """The servable a request names: the latest AVAILABLE version, a version number, or a version label.

        Raises:
            ServingError: NOT_FOUND when no such version is AVAILABLE (TFS: ``Servable not found for request``),
                INVALID_ARGUMENT for a label the config doesn't define (TFS: ``Unrecognized servable version
                label``).
        """
        snapshot = self._snapshot
        if label is not None:
            resolved = snapshot.labels.get(name, {}).get(label)
            if resolved is None:
                raise invalid_argument(f"Unrecognized servable version label: {label}")
            version = resolved
        if version is None:
            latest = snapshot.latest.get(name)
            if latest is None:
                raise not_found(f"Servable not found for request: Latest({name})")
            return latest
        servable = snapshot.available.get(name, {}).get(version)
        if servable is None:
            raise not_found(f"Servable not found for request: Specific({name}, {version})")
        return servable

    def status(self, name: str, version: int | None = None) -> tuple[VersionStatus, ...]:
        """Every version's status, latest first (as TFS orders them), or one version's.

        Raises:
            ServingError: NOT_FOUND when the model (or that version) has never been seen.
        """
        statuses = self._snapshot.status.get(name, ())
        if version is None:
            if not statuses:
                raise not_found(f"Could not find any versions of model {name}")
            return statuses
        for entry in statuses:
            if entry.version == version:
                return (entry,)
        raise not_found(f"Could not find version {version} of model {name}")

    def knows(self, name: str) -> bool:
        """Whether a model of that name has ever had a version (used to bound metric label values)."""
        return name in self._snapshot.status

    def snapshot(self) -> Snapshot[T]:
        return self._snapshot

    # --- polling ----------------------------------------------------------------------------------------------

    def poll_once(self) -> None:
        """Scan the folders once: start loads of new wanted versions, unload unwanted ones."""
        sources = self._sources()
        # File-system scans happen outside the lock; only the bookkeeping is locked.
        found = {source.name: scan_versions(source.base_path) for source in sources}
        with self._lock:
            for source in sources:
                versions = found[source.name]
                self._wanted_labels[source.name] = dict(source.labels)
                self._plan_model(source.name, versions, source.policy.select(versions))
            for name in set(self._records) - set(found):
                self._wanted_labels.pop(name, None)
                self._plan_model(name, {}, set())
            self._publish()

    def _plan_model(self, name: str, found: Mapping[int, Path], aspired: set[int]) -> None:
        records = self._records.setdefault(name, {})
        for version in sorted(aspired):
            path = found[version]
            record = records.get(version)
            fingerprint = _fingerprint(path)
            if record is not None and record.state != State.END:
                record.aspired = True
                continue
            if record is not None and record.error is not None and record.fingerprint == fingerprint:
                record.aspired = True  # failed before, files unchanged: no retry loop
                continue
            record = _Record(version=version, path=path, fingerprint=fingerprint)
            records[version] = record
            log.info("Adding servable version {name: %s version: %d} from %s", name, version, path)
            self._pool.submit(self._load, name, record)
        for version, record in records.items():
            if version not in aspired:
                record.aspired = False
        self._unload_unwanted(name, records)

    def _unload_unwanted(self, name: str, records: dict[int, _Record[T]]) -> None:
        unwanted = [r for r in records.values() if not r.aspired and r.state == State.AVAILABLE]
        if not unwanted:
            return
        wanted_available = any(r.aspired and r.state == State.AVAILABLE for r in records.values())
        wanted_loading = any(r.aspired and r.state in (State.START, State.LOADING) for r in records.values())
        if wanted_loading and not wanted_available:
            return  # keep serving the old version until a wanted one is up
        for record in unwanted:
            log.info("Unloading servable version {name: %s version: %d}", name, record.version)
            record.state = State.UNLOADING
            self._publish()
            # In-flight requests hold their own reference; dropping ours frees the model once they finish.
            record.servable = None
            record.state = State.END
            log.info("Done unloading servable version {name: %s version: %d}", name, record.version)

    def _load(self, name: str, record: _Record[T]) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            record.state = State.LOADING
            self._publish()
        log.info("Loading servable version {name: %s version: %d}", name, record.version)
        servable: T | None = None
        error: ServingError | None = None
        try:
            servable = self._loader(name, record.version, record.path)
        except ServingError as exc:
            error = exc
        except Exception as exc:
            log.exception("Loading servable version {name: %s version: %d} failed", name, record.version)
            error = ServingError(grpc.StatusCode.UNKNOWN, f"{type(exc).__name__}: {exc}")
        with self._lock:
            if error is None:
                record.servable = servable
                record.state = State.AVAILABLE
                log.info("Successfully loaded servable version {name: %s version: %d}", name, record.version)
                self._unload_unwanted(name, self._records.get(name, {}))
            else:
                record.error = error
                record.state = State.END
                log.error(
                    "Loading servable version {name: %s version: %d} failed: %s: %s",
                    name,
                    record.version,
                    error.code.name,
                    error.message,
                )
            self._publish()

    def _publish(self) -> None:
        """Rebuild the snapshot that requests read (called with the lock held, after every change)."""
        latest: dict[str, T] = {}
        available: dict[str, dict[int, T]] = {}
        status: dict[str, tuple[VersionStatus, ...]] = {}
        for name, records in self._records.items():
            ready = {v: r.servable for v, r in records.items() if r.state == State.AVAILABLE and r.servable is not None}
            if ready:
                available[name] = ready
                latest[name] = ready[max(ready)]
            if records:
                status[name] = tuple(
                    VersionStatus(
                        version=v,
                        state=r.state,
                        error_code=r.error.code if r.error else grpc.StatusCode.OK,
                        error_message=r.error.message if r.error else "",
                    )
                    for v, r in sorted(records.items(), reverse=True)
                )
        self._labels = {
            name: self._effective_labels(name, wanted, available.get(name, {}))
            for name, wanted in self._wanted_labels.items()
        }
        self._snapshot = Snapshot(latest=latest, available=available, labels=dict(self._labels), status=status)
        with self._changed:
            self._changed.notify_all()

    def _effective_labels(self, name: str, wanted: Mapping[str, int], ready: Mapping[int, object]) -> dict[str, int]:
        """A label moves to its configured version only once that version is AVAILABLE: until then it keeps
        answering with its previous version, so moving a label never fails a request. A new label is set at once
        (NOT_FOUND until its version loads)."""
        served = self._labels.get(name, {})
        effective: dict[str, int] = {}
        for label, version in wanted.items():
            if version in ready or label not in served:
                effective[label] = version
            else:
                effective[label] = served[label]
                if (name, label, version) not in self._label_waits:
                    self._label_waits.add((name, label, version))
                    log.info(
                        "Label %s of model %s stays on version %d until version %d is available",
                        label,
                        name,
                        served[label],
                        version,
                    )
        return effective

    def wait_settled(self, names: Iterable[str], timeout: float) -> bool:
        """Wait until no wanted version of these models is still loading; False on timeout."""
        names = list(names)
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:  # never held while waiting on _changed: _publish takes _lock, then _changed
                busy = any(
                    r.aspired and r.state in (State.START, State.LOADING)
                    for name in names
                    for r in self._records.get(name, {}).values()
                )
            remaining = deadline - time.monotonic()
            if not busy:
                return True
            if remaining <= 0:
                return False
            with self._changed:
                self._changed.wait(min(remaining, 0.5))

    def labels(self, name: str) -> tuple[Mapping[str, int], Mapping[str, int]]:
        """The model's labels as configured and as served."""
        with self._lock:
            return dict(self._wanted_labels.get(name, {})), dict(self._labels.get(name, {}))
