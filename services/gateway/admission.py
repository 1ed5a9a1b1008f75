"""Load shedding: admit an inference request before its body is read, and log overload as a rate.

:class:`Admission` counts the inference requests being served (their body being read, decoded, queued or at the
model server) against a limit. Each transport takes a ticket at the very start of ``detect``, ``annotate`` and
``classify`` (REST before ``await request.body()``, gRPC before decoding the message) and holds it until the
request is answered; past the limit the request is refused with :class:`~services.errors.Overloaded` (503 +
``Retry-After`` / RESOURCE_EXHAUSTED) having cost nothing but its headers. Accepted requests are still bounded by
the batcher: a full queue (``reason="queue_full"``, a tiled image whose views do not fit) and an image that waited
longer than ``queue_deadline_ms`` in the queue (``reason="deadline"``) are refused too, never served late.

Every transport reports each overload refusal through :func:`record_overload`, which counts it by reason
(``spotter_shed_requests_total``) and logs at most one WARNING per :data:`LOG_INTERVAL_SECONDS` with the number of
refusals since the last one: under a flood, a few lines, not one per request.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import time
from collections.abc import Iterator

from services import errors
from services.gateway import metrics

logger = logging.getLogger(__name__)

LOG_INTERVAL_SECONDS = 10.0
"""Least time between two overload WARNINGs."""


def overloaded(message: str, reason: str, *, retry_after: float, **details: object) -> errors.Overloaded:
    """An :class:`~services.errors.Overloaded` whose details say why (a :data:`metrics.SHED_REASONS` value)."""
    return errors.Overloaded(message, retry_after=retry_after, details={"reason": reason, **details})


class Admission:
    """At most ``limit`` inference requests served at once; the one past it is refused at once.

    Plain counting on the event loop (REST and gRPC share the loop), so no lock is needed.
    """

    def __init__(self, limit: int, *, retry_after: float) -> None:
        if limit < 1:
            raise ValueError("the admission limit must be at least 1")
        self._limit = limit
        self._retry_after = retry_after
        self._admitted = 0
        metrics.ADMISSION_CAPACITY.set(limit)

    @property
    def admitted(self) -> int:
        """Requests holding a ticket now."""
        return self._admitted

    @property
    def limit(self) -> int:
        return self._limit

    @contextlib.contextmanager
    def ticket(self) -> Iterator[None]:
        """Hold a place for one request for the duration of the block.

        Raises:
            Overloaded: ``limit`` requests are already being served.
        """
        if self._admitted >= self._limit:
            raise overloaded(
                f"the gateway is serving {self._limit} requests, its limit; retry shortly",
                "admission",
                retry_after=self._retry_after,
                limit=self._limit,
            )
        self._admitted += 1
        metrics.ADMITTED_REQUESTS.set(self._admitted)
        try:
            yield
        finally:
            self._admitted -= 1
            metrics.ADMITTED_REQUESTS.set(self._admitted)


class _RateLog:
    """One WARNING per ``interval`` seconds at most, with what was refused since the one before."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._last = -float("inf")
        self._since: collections.Counter[str] = collections.Counter()

    def note(self, reason: str, where: str, message: str) -> None:
        self._since[reason] += 1
        now = time.monotonic()
        if now - self._last < self._interval:
            return
        counts = ", ".join(f"{name} {count}" for name, count in sorted(self._since.items()))
        logger.warning(
            "overloaded: %d requests refused since the last report (%s); latest: %s: %s",
            sum(self._since.values()),
            counts,
            where,
            message,
        )
        self._last = now
        self._since.clear()


_rate_log = _RateLog(LOG_INTERVAL_SECONDS)


def record_overload(where: str, exc: errors.Overloaded) -> None:
    """Count one refused request by reason and log the overload at a bounded rate (every transport calls this)."""
    details = exc.details if isinstance(exc.details, dict) else {}
    reason = str(details.get("reason", "upstream"))
    metrics.SHED_REQUESTS.labels(reason if reason in metrics.SHED_REASONS else "upstream").inc()
    _rate_log.note(reason, where, exc.message)
