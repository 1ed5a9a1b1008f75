"""The settings of the worker process, for job functions running in its forked work-horses.

``spotter worker`` builds :class:`~services.worker.config.WorkerSettings` once at start-up and sets them here before
it forks anything, so every job sees the same settings. A job run by another worker (RQ's own ``rq worker``, a test's
``SimpleWorker``) builds them from the environment on first use.
"""

from __future__ import annotations

from services.worker.config import WorkerSettings

_settings: WorkerSettings | None = None


def set_worker_settings(settings: WorkerSettings | None) -> None:
    """Set (or with ``None`` forget) the settings jobs in this process and its children see."""
    global _settings
    _settings = settings


def worker_settings() -> WorkerSettings:
    """The worker's settings (built from the environment the first time if the worker did not set them)."""
    global _settings
    if _settings is None:
        _settings = WorkerSettings()
    return _settings
