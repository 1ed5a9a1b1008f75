"""Start the embedded model server (``spotter modelserver``) as a real subprocess for a test, and stop it.

TensorFlow-free: the server imports TensorFlow in its own process, the test talks to it over gRPC and REST. The
launcher itself lives in :mod:`services.modelserver.launch` (shared with ``make bench``) and is re-exported here.

    with running_model_server(root, log_dir=tmp_path, wait_for=["demo"]) as ms:
        channel = grpc.insecure_channel(ms.grpc_target)
        ...

or, as a fixture shared by a module or session::

    modelserver = model_server_fixture(populate_models, wait_for=["demo"])
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from services.modelserver.launch import START_TIMEOUT, ModelServerHandle, running_model_server

__all__ = ["START_TIMEOUT", "ModelServerHandle", "model_server_fixture", "running_model_server"]


def model_server_fixture(
    populate: Callable[[Path], Path | None],
    *,
    scope: Any = "session",
    wait_for: Sequence[str] = (),
    poll_seconds: float = 0.5,
    env: dict[str, str] | None = None,
    name: str = "modelserver",
) -> Any:
    """A pytest fixture (assign it to a module-level name) that runs one model server for its scope.

    ``populate(root)`` fills the empty model root and returns the path of a ``models.config`` or None.
    """

    @pytest.fixture(scope=scope)
    def _fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServerHandle]:
        base = tmp_path_factory.mktemp(name)
        root = base / "models"
        root.mkdir()
        config_file = populate(root)
        with running_model_server(
            root,
            log_dir=base / "logs",
            config_file=config_file,
            poll_seconds=poll_seconds,
            env=env,
            wait_for=wait_for,
            name=name,
        ) as handle:
            yield handle

    return _fixture
