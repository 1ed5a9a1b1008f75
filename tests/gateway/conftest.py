"""Fixtures for the gateway tests. The session's model server (``model_server``, over ``tiny_models``) is shared by
every test package: it lives in ``tests/conftest.py``, its models in ``tests/support/session_models.py``.
"""

from __future__ import annotations

import pytest

from tests.support.session_models import DEMO, LABEL_MAP, TINY_SIZE

__all__ = ["DEMO", "LABEL_MAP", "TINY_SIZE"]


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (the gateway's loop), through anyio's pytest plugin."""
    return "asyncio"
