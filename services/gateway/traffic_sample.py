"""Keep a uniform sample of each model's real canvases, off the request path, for the next version's warmup.

The dataplane hands each inference request's letterboxed canvases to :meth:`TrafficSampler.offer`, which costs a
``put_nowait`` on a small queue and never waits, raises or touches the network. One background task takes the offers
one at a time and, in a worker thread, runs Algorithm R against the model's reservoir in Redis
(:mod:`services.store.traffic_sample`, shared by every gateway process): count the request, and when it is kept,
serialize its canvas and store it in its slot. So a slow or absent Redis never fails or slows a served request: a
full queue drops the offer, a Redis error is logged once per outage, counted in ``spotter_traffic_samples_total``,
and pauses sampling for a while instead of trying again on every request.

Off unless ``SPOTTER_WARMUP_SAMPLES`` is set: the sample is the users' images at the model's resolution.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Sequence

import numpy as np
import redis

from services.gateway import metrics
from services.gateway.config import GatewaySettings
from services.gateway.tensors import to_tensor_proto
from services.store.traffic_sample import SampleStore, reservoir_slot

logger = logging.getLogger(__name__)

QUEUE_SIZE = 16
"""Offers waiting for the background task; more are dropped (it holds references to canvases, ~0.3-1.2 MB each)."""
PAUSE_SECONDS = 30.0
"""After a Redis error, offers are dropped unseen for this long before Redis is tried again."""
REDIS_TIMEOUT_SECONDS = 1.0


class TrafficSampler:
    """Per model, a reservoir of ``size`` canvases of real requests, filled by one background task.

    Args:
        store: where the reservoirs live (its Redis client should have short timeouts).
        size: ``k``, the slots per model.
        rng: the source of Algorithm R's choices (seeded in tests).
    """

    def __init__(
        self,
        store: SampleStore,
        size: int,
        *,
        rng: random.Random | None = None,
        pause_seconds: float = PAUSE_SECONDS,
    ) -> None:
        self._store = store
        self._size = size
        self._rng = rng or random.Random()
        self._pause_seconds = pause_seconds
        self._queue: asyncio.Queue[tuple[str, np.ndarray]] = asyncio.Queue(QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None
        self._paused_until = 0.0
        self._failing = False

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> TrafficSampler | None:
        """The sampler ``settings`` ask for, or None when sampling is off (``warmup_samples`` 0, the default)."""
        if settings.warmup_samples < 1:
            return None
        connection = redis.Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
        )
        return cls(SampleStore(connection, ttl_seconds=settings.warmup_sample_ttl_seconds), settings.warmup_samples)

    def start(self) -> None:
        """Start the background task (in the gateway's lifespan, on its event loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="traffic-sampler")

    async def close(self) -> None:
        """Stop the background task (offers still queued are dropped) and close the Redis client."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await asyncio.to_thread(self._store.close)

    def offer(self, model: str, canvases: Sequence[np.ndarray]) -> None:
        """Offer one request's canvases (one of its views, chosen at random, is the request's candidate).

        Never blocks and never raises: the canvases are only read, later, by the background task (they are not
        changed after the dataplane made them).
        """
        if not canvases:
            return
        if time.monotonic() < self._paused_until:
            metrics.TRAFFIC_SAMPLES.labels(model, "dropped").inc()
            return
        canvas = canvases[self._rng.randrange(len(canvases))] if len(canvases) > 1 else canvases[0]
        try:
            self._queue.put_nowait((model, canvas))
        except asyncio.QueueFull:
            metrics.TRAFFIC_SAMPLES.labels(model, "dropped").inc()

    async def drain(self) -> None:
        """Wait until every offer queued so far is handled (for tests and benchmarks)."""
        await self._queue.join()

    async def _run(self) -> None:
        while True:
            model, canvas = await self._queue.get()
            try:
                outcome = await asyncio.to_thread(self._record, model, canvas)
            except redis.RedisError as exc:
                outcome = "failed"
                self._paused_until = time.monotonic() + self._pause_seconds
                if not self._failing:
                    logger.warning(
                        "traffic sampling paused for %gs: Redis failed (%s); requests are served as usual",
                        self._pause_seconds,
                        exc,
                    )
                self._failing = True
            except Exception:  # a bug here must not stop sampling for the gateway's life
                outcome = "failed"
                logger.exception("traffic sampling of %s failed", model)
            else:
                if self._failing:
                    logger.info("traffic sampling resumed: Redis answers again")
                self._failing = False
            finally:
                self._queue.task_done()
            metrics.TRAFFIC_SAMPLES.labels(model, outcome).inc()

    def _record(self, model: str, canvas: np.ndarray) -> str:
        """Algorithm R for one request (in a worker thread): count it, keep its canvas if its draw says so."""
        slot = reservoir_slot(self._store.count(model), self._size, self._rng)
        if slot is None:
            return "passed"
        self._store.put(model, slot, to_tensor_proto(canvas).SerializeToString())
        return "kept"
