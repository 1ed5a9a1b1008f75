"""Which models exist before anyone asks: TFS's models.config (our stubs + text_format), or the model root."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.gateway.modelconfig import configured_models, read_model_config, scan_model_root

MODELS_CONFIG = """
model_config_list {
  config {
    name: "demo"
    base_path: "/models/demo"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 1 versions: 2 } }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 2 }
  }
  config { name: "other" base_path: "/models/other" }
}
"""


def test_reads_names_and_version_labels(tmp_path: Path) -> None:
    path = tmp_path / "models.config"
    path.write_text(MODELS_CONFIG)
    models = read_model_config(path)
    assert [m.name for m in models] == ["demo", "other"]
    assert models[0].version_labels == {"stable": 1, "canary": 2}
    assert models[1].version_labels == {}


def test_a_broken_config_is_a_value_error(tmp_path: Path) -> None:
    path = tmp_path / "models.config"
    path.write_text("model_config_list { config { nme: 'x' } }")
    with pytest.raises(ValueError, match="not a valid TFS model config"):
        read_model_config(path)
    assert configured_models(path, tmp_path) == []  # logged, not fatal


def test_scans_the_model_root(tmp_path: Path) -> None:
    (tmp_path / "demo" / "1").mkdir(parents=True)
    (tmp_path / "demo" / ".tmp-123").mkdir()
    (tmp_path / "empty").mkdir()
    (tmp_path / "pending" / ".tmp-1").mkdir(parents=True)
    (tmp_path / ".hidden" / "1").mkdir(parents=True)
    (tmp_path / "README.md").write_text("not a model")
    assert [m.name for m in scan_model_root(tmp_path)] == ["demo"]
    assert scan_model_root(tmp_path / "missing") == []
    assert [m.name for m in configured_models(None, tmp_path)] == ["demo"]
