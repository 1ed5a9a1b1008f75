"""GatewaySettings: defaults, SPOTTER_* environment variables, API keys in both notations."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.gateway.config import GatewaySettings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPOTTER_TFS_GRPC", raising=False)
    settings = GatewaySettings(_env_file=None)
    assert (settings.http_port, settings.grpc_port, settings.tfs_grpc) == (8080, 50051, "127.0.0.1:8500")
    assert (settings.max_batch_size, settings.max_batch_delay_ms, settings.max_queue_size) == (16, 5.0, 256)
    assert settings.max_inflight_batches == 2
    assert settings.max_image_bytes == 20 * 1024 * 1024
    assert settings.api_keys == [] and settings.inference_requires_key is False


def test_environment_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPOTTER_TFS_GRPC", "tfs:9000")
    monkeypatch.setenv("SPOTTER_MAX_BATCH_SIZE", "1")
    monkeypatch.setenv("SPOTTER_MAX_BATCH_DELAY_MS", "0")
    monkeypatch.setenv("SPOTTER_LABEL_MAPS", f'{{"odapi": "{tmp_path / "map.pbtxt"}"}}')
    monkeypatch.setenv("SPOTTER_MODEL_CONFIG_FILE", str(tmp_path / "models.config"))
    settings = GatewaySettings(_env_file=None)
    assert settings.tfs_grpc == "tfs:9000"
    assert settings.max_batch_size == 1 and settings.max_batch_delay_seconds == 0.0
    assert settings.label_maps == {"odapi": tmp_path / "map.pbtxt"}
    assert settings.model_config_file == tmp_path / "models.config"


@pytest.mark.parametrize("value", ["k1,k2", " k1 , k2 ,", '["k1", "k2"]'])
def test_api_keys_comma_separated_or_json(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SPOTTER_API_KEYS", value)
    settings = GatewaySettings(_env_file=None)
    assert [k.get_secret_value() for k in settings.api_keys] == ["k1", "k2"]
    assert "k1" not in repr(settings)  # secrets stay out of logs


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOTTER_MAX_BATCH_SIZE", "0")
    with pytest.raises(ValueError, match="max_batch_size"):
        GatewaySettings(_env_file=None)
