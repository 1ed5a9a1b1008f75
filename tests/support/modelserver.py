"""Start the embedded model server (``spotter modelserver``) as a real subprocess for a test, and stop it.

TensorFlow-free: the server imports TensorFlow in its own process, the test talks to it over gRPC and REST. The
launcher lives in :mod:`services.modelserver.launch` (shared with ``make bench``); this wrapper counts the starts,
and ``tests/conftest.py`` prints the count at the end of the run.

Most tests need no server of their own: the session's ``model_server`` fixture (``tests/conftest.py``) serves the
demo model and the tiny models of ``tests/support/session_models.py``. A test that reloads, reconfigures or kills
its server starts its own, on free ports or on given ones::

    with running_model_server(root, log_dir=tmp_path, wait_for=["tiny"]) as ms:
        channel = grpc.insecure_channel(ms.grpc_target)
    with running_model_server(root, log_dir=tmp_path, ports=(ms.grpc_port, ms.rest_port)):
        ...  # back where a gateway expects it
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from services.modelserver import launch
from services.modelserver.launch import START_TIMEOUT, ModelServerHandle

__all__ = ["STARTS", "START_TIMEOUT", "ModelServerHandle", "running_model_server"]

STARTS: list[str] = []
"""The log names of the model servers this test process started, in order (the run's summary counts them)."""


@contextlib.contextmanager
def running_model_server(model_root: Path, **options: Any) -> Iterator[ModelServerHandle]:
    """:func:`services.modelserver.launch.running_model_server` (same arguments, ``ports=`` included), counted."""
    STARTS.append(str(options.get("name", "modelserver")))
    with launch.running_model_server(model_root, **options) as handle:
        yield handle
