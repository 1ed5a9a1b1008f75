"""Settings shared by the two processes that handle dataset uploads: the gateway (which checks an archive's listing
as it arrives) and the worker (which extracts it), so both enforce the same limits."""

from __future__ import annotations

from pydantic import Field

from services.settings import CommonSettings
from services.training.datasets.archive import ArchiveLimits

GiB = 1 << 30


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
