"""The metric families Spotter's processes export, read from the code that defines them (no server needed)."""

from __future__ import annotations

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

# Sample name suffixes per family type, as the exposition writes them.
_SUFFIXES = {
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "counter": ("_total", "_created", ""),
    "summary": ("", "_sum", "_count", "_created"),
}


def families(text: str) -> dict[str, str]:
    """Family name -> type, from a text exposition (HELP/TYPE lines count even without samples)."""
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def sample_names(found: dict[str, str]) -> set[str]:
    """Every sample name the families can produce (``x_bucket``, ``x_total``...)."""
    names = set()
    for name, kind in found.items():
        names.update(name + suffix for suffix in _SUFFIXES.get(kind, ("",)))
    return names


def gateway_families() -> dict[str, str]:
    import services.gateway.metrics  # noqa: F401  (registers the gateway's metrics in the default registry)

    return {k: v for k, v in families(generate_latest(REGISTRY).decode()).items() if k.startswith("spotter_")}


def modelserver_families() -> dict[str, str]:
    from services.modelserver.metrics import ModelServerMetrics

    return families(ModelServerMetrics().render())


def worker_families(redis_url: str) -> dict[str, str]:
    """The worker's families, its Redis-read ones included (read from the Redis at ``redis_url``)."""
    import redis

    from services.worker.metrics import worker_registry

    with redis.Redis.from_url(redis_url) as connection:
        return families(generate_latest(worker_registry(connection)).decode())
