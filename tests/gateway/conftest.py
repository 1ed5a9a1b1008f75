"""Fixtures for the gateway tests: one model server per session over tiny generated models.

The tiny models (``tests/support/tiny_models.py``) answer predictably: fixed boxes, scores that follow the image's
mean pixel, so every number the gateway answers can be checked. They are built once, in a subprocess (this process
stays TensorFlow-free), and served by the real embedded model server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.support.modelserver import ModelServerHandle, running_model_server
from tests.support.tiny_models import build_models

TINY_SIZE = 16
DEMO = REPO / "models" / "demo"

LABEL_MAP = """
item { id: 1 name: "ball" }
item { id: 2 name: "box" }
item { id: 3 name: "cone" }
"""


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (the gateway's loop), through anyio's pytest plugin."""
    return "asyncio"


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ``root/`` (the model repository, its ``models.config``) and ``staging/`` (versions to publish).

    - ``tiny``: detector, input 16, labels circle/square/triangle, version label ``stable`` -> 1;
    - ``cls``: classifier, input 8;
    - ``odapi``: TF1 export without a labels signature, input ``[-1, -1, -1, 3]``, ``label_map.pbtxt`` beside it;
    - ``fresh``: detector with version 1 served and version 2 (half the scores) waiting in ``staging/fresh/2``;
    - ``demo``: the project's demo model (``models/demo``, linked), when it has been made.
    """
    # Fixed name under the session's temp folder: a second user of this fixture (tests/client imports it) reuses
    # the models built by the first instead of building them again.
    base = tmp_path_factory.getbasetemp() / "gateway-models"
    root, staging = base / "root", base / "staging"
    if (base / "models.config").exists():
        return base
    base.mkdir(exist_ok=True)
    build_models(
        [
            ("detector", root / "tiny" / "1", {"size": TINY_SIZE}),
            ("classifier", root / "cls" / "1", {"size": 8}),
            ("tf1", root / "odapi" / "1", {}),
            ("detector", root / "fresh" / "1", {"size": TINY_SIZE}),
            ("detector", staging / "fresh" / "2", {"size": TINY_SIZE, "score_scale": 0.5}),
        ]
    )
    (root / "odapi" / "label_map.pbtxt").write_text(LABEL_MAP)
    entries = {
        "tiny": 'version_labels { key: "stable" value: 1 }',
        "cls": "",
        "odapi": "",
        "fresh": "model_version_policy { all {} }",
    }
    if (DEMO / "1" / "saved_model.pb").exists():
        (root / "demo").symlink_to(DEMO, target_is_directory=True)
        entries["demo"] = ""
    config = (
        "model_config_list {\n"
        + "".join(
            f'  config {{ name: "{name}" base_path: "{root / name}" model_platform: "tensorflow" {extra} }}\n'
            for name, extra in entries.items()
        )
        + "}\n"
    )
    (base / "models.config").write_text(config)
    return base


@pytest.fixture(scope="session")
def model_server(tiny_models: Path) -> Iterator[ModelServerHandle]:
    """The embedded model server over the tiny models (a real subprocess on free ports)."""
    with running_model_server(
        tiny_models / "root",
        log_dir=tiny_models / "logs",
        config_file=tiny_models / "models.config",
        poll_seconds=0.5,
        wait_for=[p.name for p in sorted((tiny_models / "root").iterdir())],
    ) as handle:
        yield handle


@pytest.fixture(scope="session")
def tiny_server(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServerHandle]:
    """A model server over ``tiny`` and ``cls`` alone: quick to start (the overload and hostile-input tests)."""
    root = tmp_path_factory.mktemp("tiny-only")
    for name in ("tiny", "cls"):
        (root / name).symlink_to(tiny_models / "root" / name, target_is_directory=True)
    with running_model_server(
        root, log_dir=root.parent / "tiny-only-logs", poll_seconds=0.5, wait_for=["tiny", "cls"]
    ) as handle:
        yield handle
