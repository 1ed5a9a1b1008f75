"""Where the gateway learns which models exist before anyone asks: TFS's ``models.config`` or the model root.

``models.config`` is TensorFlow Serving's own text-format ``ModelServerConfig`` (parsed with our stubs, so the file
real TFS reads is the file we read): it gives model names and ``version_labels``. Without one, every folder of the
model root that holds at least one integer-named version folder is a model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import text_format

from services.gen.tfs import model_server_config_pb2

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConfiguredModel:
    """A model named by configuration, with its version labels (label -> version)."""

    name: str
    version_labels: dict[str, int] = field(default_factory=dict)


def read_model_config(path: Path) -> list[ConfiguredModel]:
    """The models of a TFS ``models.config`` file.

    Raises:
        ValueError: when the file is not a valid text-format ModelServerConfig.
        OSError: when it cannot be read.
    """
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(path.read_text(), config)
    except text_format.ParseError as err:
        raise ValueError(f"{path} is not a valid TFS model config: {err}") from err
    return [
        ConfiguredModel(name=entry.name, version_labels={k: int(v) for k, v in entry.version_labels.items()})
        for entry in config.model_config_list.config
        if entry.name
    ]


def scan_model_root(root: Path) -> list[ConfiguredModel]:
    """Models found in a model root laid out as ``<root>/<name>/<version>/`` (hidden and temporary folders skipped)."""
    if not root.is_dir():
        return []
    found = []
    for child in sorted(root.iterdir()):
        if child.name.startswith(".") or not child.is_dir():
            continue
        if any(v.is_dir() and v.name.isdigit() for v in child.iterdir()):
            found.append(ConfiguredModel(name=child.name))
    return found


def configured_models(config_file: Path | None, model_root: Path) -> list[ConfiguredModel]:
    """The models configuration names: from ``config_file`` when set, else from scanning ``model_root``."""
    if config_file is not None:
        try:
            return read_model_config(config_file)
        except (OSError, ValueError) as err:
            logger.warning("cannot read the model config %s: %s", config_file, err)
            return []
    try:
        return scan_model_root(model_root)
    except OSError as err:
        logger.warning("cannot scan the model root %s: %s", model_root, err)
        return []
