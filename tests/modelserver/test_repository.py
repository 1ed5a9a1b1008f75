"""The repository's discovery, version policy and state machine, with a stand-in loader (no TensorFlow)."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from services.modelserver.config import ModelSource, VersionPolicy, discover_models
from services.modelserver.repository import ModelRepository, State, scan_versions
from services.modelserver.status import ServingError

LATEST_2 = VersionPolicy("latest", num_versions=2)


def publish(root: Path, model: str, version: int, content: bytes = b"model") -> Path:
    folder = root / model / str(version)
    folder.mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(content)
    return folder


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.01)


class Loader:
    """Loads ``"<name>:<version>"``; fails for versions whose saved_model.pb says ``fail``; can be held."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.gates: dict[tuple[str, int], threading.Event] = {}

    def __call__(self, name: str, version: int, path: Path) -> str:
        self.calls.append((name, version))
        gate = self.gates.get((name, version))
        if gate is not None:
            gate.wait(5)
        content = (path / "saved_model.pb").read_bytes()
        if content == b"fail":
            raise ServingError(grpc.StatusCode.DATA_LOSS, "bad model")
        if content == b"crash":
            raise RuntimeError("boom")
        return f"{name}:{version}"


@pytest.fixture
def loader() -> Loader:
    return Loader()


@pytest.fixture
def make(tmp_path: Path, loader: Loader) -> Iterator[Callable[..., ModelRepository[str]]]:
    repositories: list[ModelRepository[str]] = []

    def factory(policy: VersionPolicy = LATEST_2, labels=None) -> ModelRepository[str]:
        def sources() -> list[ModelSource]:
            found = discover_models(tmp_path, policy)
            return [ModelSource(s.name, s.base_path, s.policy, (labels or {}).get(s.name, {})) for s in found]

        repository = ModelRepository(sources, loader, poll_seconds=0.05, load_threads=2)
        repositories.append(repository)
        return repository

    yield factory
    for repository in repositories:
        repository.stop()


def states(repository: ModelRepository[str], name: str) -> dict[int, State]:
    try:
        return {s.version: s.state for s in repository.status(name)}
    except ServingError:
        return {}


def settle(repository: ModelRepository[str], name: str, expected: dict[int, State]) -> None:
    repository.poll_once()
    wait_until(lambda: states(repository, name) == expected)


def test_scan_versions_takes_integer_folders_holding_a_saved_model(tmp_path: Path) -> None:
    publish(tmp_path, "m", 1)
    publish(tmp_path, "m", 10)
    (tmp_path / "m" / "2").mkdir()  # no saved_model.pb yet
    (tmp_path / "m" / ".tmp-3").mkdir()
    (tmp_path / "m" / "examples").mkdir()
    (tmp_path / "m" / "label_map.pbtxt").write_text("")
    (tmp_path / "m" / "4").write_text("a file, not a folder")
    assert scan_versions(tmp_path / "m") == {1: tmp_path / "m" / "1", 10: tmp_path / "m" / "10"}
    assert scan_versions(tmp_path / "nope") == {}


def test_discover_models_skips_hidden_folders_and_files(tmp_path: Path) -> None:
    publish(tmp_path, "a", 1)
    (tmp_path / ".tmp-b").mkdir()
    (tmp_path / "README").write_text("")
    assert [m.name for m in discover_models(tmp_path, VersionPolicy())] == ["a"]
    assert discover_models(tmp_path / "nope", VersionPolicy()) == []


def test_a_version_loads_in_the_background(tmp_path: Path, make, loader: Loader) -> None:
    publish(tmp_path, "m", 1)
    loader.gates[("m", 1)] = gate = threading.Event()
    repository = make()
    repository.poll_once()  # returns at once: the load runs in the pool
    wait_until(lambda: states(repository, "m") == {1: State.LOADING})
    with pytest.raises(ServingError) as info:
        repository.resolve("m")
    assert (info.value.code, info.value.message) == (
        grpc.StatusCode.NOT_FOUND,
        "Servable not found for request: Latest(m)",
    )
    gate.set()
    wait_until(lambda: states(repository, "m") == {1: State.AVAILABLE})
    assert repository.resolve("m") == "m:1"
    assert repository.resolve("m", version=1) == "m:1"
    assert repository.knows("m") and not repository.knows("x")


def test_latest_n_versions_are_loaded(tmp_path: Path, make, loader: Loader) -> None:
    for version in (1, 2, 3):
        publish(tmp_path, "m", version)
    repository = make(VersionPolicy("latest", num_versions=2))
    settle(repository, "m", {3: State.AVAILABLE, 2: State.AVAILABLE})
    assert [s.version for s in repository.status("m")] == [3, 2]  # latest first, like TFS
    assert sorted(loader.calls) == [("m", 2), ("m", 3)]
    assert repository.resolve("m") == "m:3"
    with pytest.raises(ServingError, match=r"Specific\(m, 1\)"):
        repository.resolve("m", version=1)


def test_an_old_version_is_unloaded_only_once_the_new_one_is_available(tmp_path: Path, make, loader: Loader) -> None:
    publish(tmp_path, "m", 1)
    repository = make(VersionPolicy("latest", num_versions=1))
    settle(repository, "m", {1: State.AVAILABLE})

    publish(tmp_path, "m", 2)
    loader.gates[("m", 2)] = gate = threading.Event()
    repository.poll_once()
    wait_until(lambda: states(repository, "m") == {2: State.LOADING, 1: State.AVAILABLE})
    repository.poll_once()
    assert repository.resolve("m") == "m:1"  # still served while 2 loads
    gate.set()
    wait_until(lambda: states(repository, "m") == {2: State.AVAILABLE, 1: State.END})
    assert repository.resolve("m") == "m:2"


def test_a_removed_version_is_unloaded(tmp_path: Path, make) -> None:
    publish(tmp_path, "m", 1)
    publish(tmp_path, "m", 2)
    repository = make()
    settle(repository, "m", {2: State.AVAILABLE, 1: State.AVAILABLE})
    shutil.rmtree(tmp_path / "m" / "2")
    settle(repository, "m", {2: State.END, 1: State.AVAILABLE})
    assert repository.resolve("m") == "m:1"
    # Published again, it loads again.
    publish(tmp_path, "m", 2)
    settle(repository, "m", {2: State.AVAILABLE, 1: State.AVAILABLE})


def test_the_last_version_removed_leaves_the_model_without_servables(tmp_path: Path, make) -> None:
    publish(tmp_path, "m", 1)
    repository = make()
    settle(repository, "m", {1: State.AVAILABLE})
    shutil.rmtree(tmp_path / "m")
    settle(repository, "m", {1: State.END})
    with pytest.raises(ServingError, match="Latest"):
        repository.resolve("m")


def test_a_failed_load_ends_with_its_error_and_is_retried_only_when_the_files_change(
    tmp_path: Path, make, loader: Loader
) -> None:
    folder = publish(tmp_path, "m", 1, b"fail")
    repository = make()
    settle(repository, "m", {1: State.END})
    (status,) = repository.status("m")
    assert (status.error_code, status.error_message) == (grpc.StatusCode.DATA_LOSS, "bad model")
    for _ in range(3):
        repository.poll_once()
    assert loader.calls == [("m", 1)]

    replacement = folder / "saved_model.pb.new"
    replacement.write_bytes(b"fixed")
    replacement.replace(folder / "saved_model.pb")
    settle(repository, "m", {1: State.AVAILABLE})
    assert loader.calls == [("m", 1), ("m", 1)]


def test_an_unexpected_load_exception_is_unknown(tmp_path: Path, make) -> None:
    publish(tmp_path, "m", 1, b"crash")
    repository = make()
    settle(repository, "m", {1: State.END})
    (status,) = repository.status("m")
    assert status.error_code == grpc.StatusCode.UNKNOWN
    assert "RuntimeError: boom" in status.error_message


def test_labels(tmp_path: Path, make) -> None:
    publish(tmp_path, "m", 1)
    publish(tmp_path, "m", 2)
    repository = make(labels={"m": {"stable": 1, "next": 3}})
    settle(repository, "m", {2: State.AVAILABLE, 1: State.AVAILABLE})
    assert repository.resolve("m", label="stable") == "m:1"
    with pytest.raises(ServingError) as info:
        repository.resolve("m", label="nope")
    assert (info.value.code, info.value.message) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Unrecognized servable version label: nope",
    )
    with pytest.raises(ServingError) as info:
        repository.resolve("m", label="next")  # points at a version that isn't available
    assert info.value.code == grpc.StatusCode.NOT_FOUND


def test_status_errors(tmp_path: Path, make) -> None:
    publish(tmp_path, "m", 1)
    repository = make()
    settle(repository, "m", {1: State.AVAILABLE})
    with pytest.raises(ServingError, match="Could not find any versions of model x"):
        repository.status("x")
    with pytest.raises(ServingError, match="Could not find version 5 of model m"):
        repository.status("m", 5)
    assert [s.version for s in repository.status("m", 1)] == [1]


def test_the_poll_thread_picks_up_new_versions(tmp_path: Path, make) -> None:
    repository = make()
    repository.start()
    publish(tmp_path, "m", 1)
    wait_until(lambda: states(repository, "m") == {1: State.AVAILABLE})
    repository.stop()
