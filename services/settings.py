"""Settings shared by every process. Each process has its own typed settings class (pydantic-settings, prefix
``SPOTTER_``) built from this base at start-up, never at import time."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    """What every Spotter process knows: where models and data live, where Redis is, how to log."""

    model_config = SettingsConfigDict(env_prefix="SPOTTER_", env_file=".env", extra="ignore", protected_namespaces=())

    model_root: Path = Path("models")
    data_dir: Path = Path("data")
    redis_url: str = "redis://127.0.0.1:6379/0"
    log_level: str = "INFO"
    log_json: bool = True
