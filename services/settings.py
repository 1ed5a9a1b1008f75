"""Settings shared by several processes. Each process has its own typed settings class (pydantic-settings, prefix
``SPOTTER_``) built from these at start-up, never at import time: :class:`CommonSettings` for every process,
:class:`DatasetSettings` for those that take dataset uploads and imports (the gateway, the worker, ``spotter
dataset``), so all enforce the same limits.

TensorFlow-free and importing no other Spotter module: anything may import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

GiB = 1 << 30


class CommonSettings(BaseSettings):
    """What every Spotter process knows: where models and data live, where Redis is, how to log."""

    model_config = SettingsConfigDict(env_prefix="SPOTTER_", env_file=".env", extra="ignore", protected_namespaces=())

    model_root: Path = Path("models")
    data_dir: Path = Path("data")
    redis_url: str = "redis://127.0.0.1:6379/0"
    log_level: str = "INFO"
    log_json: bool = True


@dataclass(frozen=True)  # no slots: the class attributes are the defaults settings classes refer to
class ArchiveLimits:
    """How big an import may be once expanded: entries, total bytes and bytes per entry."""

    max_files: int = 100_000
    max_expanded_bytes: int = 4 << 30
    max_member_bytes: int = 1 << 30


class DatasetSettings(CommonSettings):
    """Limits on dataset uploads and imports (env prefix ``SPOTTER_``).

    Attributes:
        dataset_max_upload_bytes: largest archive the gateway accepts (413 past it, checked while it streams in).
        dataset_max_files: most entries an archive may hold.
        dataset_max_expanded_bytes: most bytes an archive may expand to (real sizes are enforced while extracting).
        dataset_max_member_bytes: most bytes one entry may expand to.
        import_timeout_seconds: an import job running longer than this is stopped and ends failed.
    """

    dataset_max_upload_bytes: int = Field(2 * GiB, ge=1)
    dataset_max_files: int = Field(ArchiveLimits.max_files, ge=1)
    dataset_max_expanded_bytes: int = Field(ArchiveLimits.max_expanded_bytes, ge=1)
    dataset_max_member_bytes: int = Field(ArchiveLimits.max_member_bytes, ge=1)
    import_timeout_seconds: int = Field(3600, ge=1)

    def archive_limits(self) -> ArchiveLimits:
        return ArchiveLimits(
            max_files=self.dataset_max_files,
            max_expanded_bytes=self.dataset_max_expanded_bytes,
            max_member_bytes=self.dataset_max_member_bytes,
        )
