"""Fixtures for every test, and the session's shared model server.

TensorFlow registers its own ``tensorflow.*`` protobuf messages; the gateway's stubs declare the same names, and one
Python process can't hold both. So ``make test`` runs two pytest processes (side by side), and the one outside
``tests/tf/`` must never import TensorFlow: anything that needs it (the model server, the worker, training) runs as a
real subprocess.

Shared by all tests: ``model_server`` (one per test process, started by the first test that asks) serves the demo
model and the tiny models of ``tests/support/session_models.py`` from ``tiny_models`` (the folder they live in). A
test that reloads, reconfigures or kills a server starts its own with ``tests.support.modelserver``.

Gateways are not shared across packages: ``tests.gateway.helpers.running_gateway`` starts one in this process in
well under a second, and the gateway's metrics live in the process's one Prometheus registry, where a long-lived
gateway's catalog refresh keeps writing ``spotter_model_server_up`` under other tests' feet.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.modelserver import STARTS, ModelServerHandle, running_model_server
from tests.support.session_models import build_session_models, served_models

REPO = Path(__file__).resolve().parent.parent
TEST_REDIS_DB = int(os.environ.get("SPOTTER_TEST_REDIS_DB", "13"))
"""The Redis database the tests flush (another number lets two checkouts run their tests at once)."""


def pytest_collection_finish(session: pytest.Session) -> None:
    if "tensorflow" in sys.modules and not any("tests/tf" in str(item.path) for item in session.items):
        raise pytest.UsageError(
            "TensorFlow was imported while collecting the TensorFlow-free tests; move the test to tests/tf/ or run "
            "the TensorFlow part in a subprocess"
        )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How many model servers this process started (the shared one included), by log name."""
    by_name = ", ".join(f"{name} x{count}" for name, count in sorted(Counter(STARTS).items()))
    terminalreporter.write_line(f"model servers started by the tests: {len(STARTS)}" + (f" ({by_name})" * bool(STARTS)))


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A dedicated Redis database on the machine's real Redis, flushed before and after the test."""
    url = f"redis://127.0.0.1:6379/{TEST_REDIS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared server's models: ``root/`` (the repository), ``models.config``, ``staging/`` (versions to publish).

    See ``tests/support/session_models.py`` for the list: ``tiny``, ``cls``, ``odapi``, ``fresh``, ``legacy``,
    ``broken``, ``nomap``, ``warm``, and ``demo`` (the project's demo model, linked) when it has been made.
    """
    return build_session_models(tmp_path_factory.mktemp("session-models"))


@pytest.fixture(scope="session")
def model_server(tiny_models: Path) -> Iterator[ModelServerHandle]:
    """The session's model server over ``tiny_models`` (a real subprocess on free ports), shared by every test that
    only serves from it. It must stop cleanly on SIGTERM, as deployed."""
    with running_model_server(
        tiny_models / "root",
        log_dir=tiny_models / "logs",
        config_file=tiny_models / "models.config",
        poll_seconds=0.5,
        wait_for=served_models(tiny_models),
        name="session-modelserver",
    ) as handle:
        yield handle
    assert handle.server.proc.returncode == 0, handle.server.log()[-4000:]


@pytest.fixture(scope="session")
def tiny_server(model_server: ModelServerHandle) -> ModelServerHandle:
    """The old name of ``model_server`` (it was a second server over ``tiny`` and ``cls``)."""
    return model_server
