"""The worker's settings (``SPOTTER_*``), built once when ``spotter worker`` (or an in-process import) starts."""

from __future__ import annotations

from pydantic import Field

from services.jobs.queues import ALL_QUEUES
from services.settings import DatasetSettings


class WorkerSettings(DatasetSettings):
    """What the RQ worker needs: Redis, where data lives, which queues, metrics port; dataset limits are inherited.

    Attributes:
        worker_queues: the queues to listen to, in priority order.
        worker_metrics_port: Prometheus metrics of the worker process (0: none).
        job_monitoring_interval: seconds between the worker's heartbeats (for a running job, and while idle).
        heartbeat_grace_seconds: how long past a missed heartbeat a worker counts as dead: its record expires and
            its job is given up as abandoned (retried or failed) by the next idle worker's check, which runs every
            ``job_monitoring_interval``. Longer than any stall of a live worker's main process.
        maintenance_interval: seconds between the worker's clean-ups of RQ's registries (abandoned jobs).
        stale_staging_hours: staging folders of imports older than this are removed when the worker starts.
        gateway_url: the gateway active-learning jobs predict through (``predict_via: gateway``).
        gateway_api_key: sent to it as ``X-API-Key`` (when its inference needs a key).
    """

    worker_queues: list[str] = Field(default_factory=lambda: list(ALL_QUEUES))
    worker_metrics_port: int = 9100
    job_monitoring_interval: int = 10
    heartbeat_grace_seconds: int = 20
    maintenance_interval: int = 120
    stale_staging_hours: float = 6.0
    gateway_url: str | None = None
    gateway_api_key: str | None = None
