"""Fixtures for the TensorFlow-free test process (everything outside tests/tf/).

TensorFlow registers its own ``tensorflow.*`` protobuf messages; the gateway's stubs declare the same names, and one
Python process can't hold both. So ``make test`` runs two pytest processes, and this one must never import
TensorFlow: anything that needs it (the model server, the worker, training) runs as a real subprocess.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

REPO = Path(__file__).resolve().parent.parent
TEST_REDIS_DB = int(os.environ.get("SPOTTER_TEST_REDIS_DB", "13"))
"""The Redis database the tests flush (another number lets two checkouts run their tests at once)."""


def pytest_collection_finish(session: pytest.Session) -> None:
    if "tensorflow" in sys.modules and not any("tests/tf" in str(item.path) for item in session.items):
        raise pytest.UsageError(
            "TensorFlow was imported while collecting the TensorFlow-free tests; move the test to tests/tf/ or run "
            "the TensorFlow part in a subprocess"
        )


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
