"""Dynamic batching of single images into Predict calls, shared by every transport.

Images are queued per :class:`BatchKey` (model, resolved version); at most ``max_inflight_batches`` Predict calls
per key are in flight. Dispatch is work-conserving (the default, as in Triton's dynamic batcher or continuous
batching): while one of the key's Predict slots is free, whatever is queued leaves at once, so a lone request never
waits for company; only while every slot is busy (when waiting costs nothing: the upstream could not take the batch
anyway) does a batch keep filling, and it leaves the moment a slot frees, with up to ``max_batch_size`` images. So
``max_batch_delay`` is only an upper bound: a batch never waits for it while a slot is free, and while every slot is
busy it waits for a slot, which no delay could shorten. ``work_conserving=False`` restores the fixed wait (a partial
batch leaves only after the delay). ``spotter_batch_dispatches_total`` counts why each
batch left (``full``; ``idle``: it left without waiting for a slot; ``waited``: every slot was busy while it filled).

Adaptive sizing (``adaptive=True``, the gateway's default): each key's batch limit is learned by a
:class:`~services.gateway.batchsizer.BatchSizer` from the measured upstream time per image at each batch size, so
batches grow only while they make the upstream cheaper per image (a GPU: up to ``max_batch_size``; a small CPU, where
concurrent single-image Predicts win: 1 or 2), within ``max_batch_size`` and the model's fixed batch dimension.

The queue is bounded over all keys: past ``max_queue_size`` pending images, :meth:`Batcher.submit` raises
:class:`~services.errors.Overloaded` at once. The wait is bounded too: an image that has waited ``max_queue_wait``
seconds without its batch leaving is taken out of the queue and refused with ``Overloaded`` (``reason="deadline"``),
and a batch never carries an image past its deadline, so an accepted request is served within its deadline or
refused, never served late (``spotter_queue_seconds`` never goes past it). A caller that is cancelled (its client went
away, its deadline passed) leaves the queue and frees its place. An upstream error fails every image of its batch with
the same domain error.

The batcher is plain asyncio and knows nothing of HTTP or gRPC: both transports submit to the same instance, so
their requests share batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from services import errors
from services.gateway import metrics
from services.gateway.admission import overloaded
from services.gateway.batchsizer import BatchSizer
from services.logs import request_id_var

logger = logging.getLogger(__name__)

Outputs = dict[str, np.ndarray]
PredictFn = Callable[["BatchKey", np.ndarray, "str | None"], Awaitable[Mapping[str, np.ndarray]]]
"""``predict(key, images [B, S, S, 3], request_ids)`` -> outputs, each with a leading batch dimension ``B``."""

# Stacking a large batch copies tens of MB: do it off the event loop so the loop keeps accepting requests.
_STACK_OFF_LOOP_BYTES = 4 * 1024 * 1024
_MAX_REQUEST_ID_HEADER = 1024


@dataclass(frozen=True, slots=True)
class BatchKey:
    """What may share a batch: one model version fed through one input tensor."""

    model: str
    version: int
    input_name: str = "images"
    max_batch: int | None = None  # a model whose batch dimension is fixed (TF OD API exports: 1)


@dataclass(eq=False, slots=True)
class _Item:
    image: np.ndarray
    future: asyncio.Future[Outputs]
    enqueued: float
    request_id: str | None


@dataclass(eq=False)
class _Lane:
    key: BatchKey
    most: int  # the configured maximum and the model's fixed batch dimension, whichever is lower
    inflight: asyncio.Semaphore
    sizer: BatchSizer | None = None  # adaptive: the learned limit, within ``most``
    pending: deque[_Item] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    worker: asyncio.Task[None] | None = None

    @property
    def limit(self) -> int:
        """The most images the next batch may carry."""
        return self.sizer.limit if self.sizer is not None else self.most


class Batcher:
    """Per-key queues that turn concurrent single-image submits into batched Predict calls.

    Args:
        predict: Runs one batch (see :data:`PredictFn`).
        max_batch_size: Most images per batch (1 turns batching off).
        max_batch_delay: Most seconds the oldest queued image waits for its batch to fill (work-conserving: only
            while every Predict slot is busy).
        max_queue_size: Most pending (not yet sent) images over all keys.
        max_inflight_batches: Most Predict calls in flight per key.
        max_queue_wait: Seconds an image may wait in the queue before it is refused (``None``: no limit).
        work_conserving: Send at once while a Predict slot is free; wait for the delay only while all are busy
            (``False``: every partial batch waits for the delay).
        retry_after: Seconds put on the ``Overloaded`` error when the queue is full.
        adaptive: Learn each key's batch limit from the upstream's per-image time per batch size (within
            ``max_batch_size``) instead of always filling batches up to ``max_batch_size``.
        clock: Seconds for timing Predict calls (the adaptive limit's input); tests give a simulated one.
    """

    def __init__(
        self,
        predict: PredictFn,
        *,
        max_batch_size: int,
        max_batch_delay: float,
        max_queue_size: int,
        max_inflight_batches: int,
        max_queue_wait: float | None = None,
        work_conserving: bool = True,
        retry_after: float = 1.0,
        adaptive: bool = False,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if max_batch_size < 1 or max_queue_size < 1 or max_inflight_batches < 1 or max_batch_delay < 0:
            raise ValueError("batch size, queue size and in-flight batches must be positive, the delay not negative")
        if max_queue_wait is not None and max_queue_wait <= 0:
            raise ValueError("the queue wait must be positive")
        self._max_wait = max_queue_wait
        self._work_conserving = work_conserving
        self._predict = predict
        self._max_batch_size = max_batch_size
        self._delay = max_batch_delay
        self._max_queue = max_queue_size
        self._max_inflight = max_inflight_batches
        self._retry_after = retry_after
        self._adaptive = adaptive
        self._clock = clock
        self._lanes: dict[BatchKey, _Lane] = {}
        self._pending = 0
        self._batches: set[asyncio.Task[None]] = set()
        self._closed = False
        metrics.QUEUE_CAPACITY.set(max_queue_size)

    @property
    def pending(self) -> int:
        """Images waiting for a batch (over all keys)."""
        return self._pending

    async def submit(self, key: BatchKey, image: np.ndarray) -> Outputs:
        """Queue one image ``[S, S, 3]`` and wait for its outputs (each without the batch dimension).

        Raises:
            Overloaded: the queue is full (at once, without waiting), or the image waited ``max_queue_wait``
                without its batch leaving.
            Unavailable: the batcher is shutting down.
            SpotterError: whatever the Predict call of its batch raised.
        """
        if self._closed:
            raise errors.Unavailable("the gateway is shutting down", retry_after=self._retry_after)
        if self._pending >= self._max_queue:
            raise overloaded(
                f"the batch queue is full ({self._max_queue} images waiting); retry shortly",
                "queue_full",
                retry_after=self._retry_after,
                max_queue_size=self._max_queue,
            )
        lane = self._lane(key)
        loop = asyncio.get_running_loop()
        item = _Item(image, loop.create_future(), loop.time(), request_id_var.get())
        lane.pending.append(item)
        self._pending += 1
        self._gauge(lane)
        lane.wake.set()
        if lane.worker is None:
            lane.worker = asyncio.create_task(self._run(lane), name=f"batcher-{key.model}-{key.version}")
        try:
            if self._max_wait is not None:
                # Bound the time in the queue only: once its batch has left, the caller waits for the Predict call.
                await asyncio.wait((item.future,), timeout=self._max_wait)
                if not item.future.done() and self._withdraw(lane, item):
                    raise self._expired()
            return await item.future
        except asyncio.CancelledError:
            # The caller is gone: give its place back unless its batch already left.
            self._withdraw(lane, item)
            raise

    async def close(self) -> None:
        """Stop batching: pending and in-flight images fail with ``Unavailable``."""
        self._closed = True
        workers = [lane.worker for lane in self._lanes.values() if lane.worker is not None]
        for task in [*workers, *self._batches]:
            task.cancel()
        await asyncio.gather(*workers, *self._batches, return_exceptions=True)
        shutting_down = errors.Unavailable("the gateway is shutting down", retry_after=self._retry_after)
        for lane in self._lanes.values():
            while lane.pending:
                item = lane.pending.popleft()
                if not item.future.done():
                    item.future.set_exception(shutting_down)
            self._gauge(lane)
        self._pending = 0

    def _withdraw(self, lane: _Lane, item: _Item) -> bool:
        """Take ``item`` out of the queue; False when its batch already took it."""
        try:
            lane.pending.remove(item)
        except ValueError:
            return False
        self._pending -= 1
        self._gauge(lane)
        return True

    def _expired(self) -> errors.Overloaded:
        wait = self._max_wait or 0.0
        return overloaded(
            f"the image waited {wait * 1000:g} ms in the batch queue without being served; retry shortly",
            "deadline",
            retry_after=self._retry_after,
            queue_deadline_ms=wait * 1000,
        )

    def _lane(self, key: BatchKey) -> _Lane:
        lane = self._lanes.get(key)
        if lane is None:
            most = min(self._max_batch_size, key.max_batch or self._max_batch_size)
            sizer = BatchSizer(most) if self._adaptive and most > 1 else None
            lane = _Lane(key, most, asyncio.Semaphore(self._max_inflight), sizer)
            self._lanes[key] = lane
        return lane

    async def _run(self, lane: _Lane) -> None:
        """Form and send batches for one key until its queue is empty (a new submit starts a new worker)."""
        loop = asyncio.get_running_loop()
        try:
            while lane.pending:
                # Wait for a full batch or for the oldest image's delay to run out. Work-conserving, only while every
                # Predict slot is busy (a slot that frees sets ``wake``): with one free, what is queued leaves now.
                waited = False
                while 0 < len(lane.pending) < lane.limit and (lane.inflight.locked() or not self._work_conserving):
                    remaining = lane.pending[0].enqueued + self._delay - loop.time()
                    if remaining <= 0:
                        break
                    waited = True
                    lane.wake.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(remaining):
                            await lane.wake.wait()
                if not lane.pending:
                    break
                waited = waited or lane.inflight.locked()
                # With every Predict slot busy, keep filling: whatever waits when a slot frees leaves together.
                await lane.inflight.acquire()
                # Every slot now busy: this call competes with the others for the upstream (what sizing compares).
                saturated = lane.inflight.locked()
                limit = lane.limit
                items = self._take(lane, limit)
                if not items:
                    lane.inflight.release()
                    continue
                reason = "full" if len(items) == limit else "waited" if waited else "idle"
                metrics.BATCH_DISPATCHES.labels(lane.key.model, str(lane.key.version), reason).inc()
                task = asyncio.create_task(self._send(lane, items, saturated))
                self._batches.add(task)
                task.add_done_callback(self._batches.discard)
        finally:
            lane.worker = None

    def _take(self, lane: _Lane, limit: int) -> list[_Item]:
        """The next batch: up to ``limit`` live images, those past their queue deadline refused instead."""
        now = asyncio.get_running_loop().time()
        queue_seconds = metrics.QUEUE_SECONDS.labels(lane.key.model, str(lane.key.version))
        items: list[_Item] = []
        while lane.pending and len(items) < limit:
            item = lane.pending.popleft()
            self._pending -= 1
            if item.future.done():
                continue
            waited = now - item.enqueued
            if self._max_wait is not None and waited > self._max_wait:
                item.future.set_exception(self._expired())
                continue
            queue_seconds.observe(waited)
            items.append(item)
        self._gauge(lane)
        return items

    async def _send(self, lane: _Lane, items: list[_Item], saturated: bool) -> None:
        key = lane.key
        version = str(key.version)
        try:
            metrics.BATCH_SIZE.labels(key.model, version).observe(len(items))
            images = [item.image for item in items]
            if sum(image.nbytes for image in images) > _STACK_OFF_LOOP_BYTES:
                batch = await asyncio.to_thread(np.stack, images)
            else:
                batch = np.stack(images)
            ids = ",".join(dict.fromkeys(item.request_id for item in items if item.request_id))
            started = self._clock()
            outputs = await self._predict(key, batch, ids[:_MAX_REQUEST_ID_HEADER] or None)
            if lane.sizer is not None:
                lane.sizer.observe(len(items), self._clock() - started, saturated=saturated)
                metrics.BATCH_LIMIT.labels(key.model, version).set(lane.sizer.limit)
            for name, value in outputs.items():
                if value.ndim == 0 or value.shape[0] != len(items):
                    raise errors.UpstreamError(
                        f"output {name!r} of {key.model} version {key.version} has shape {list(value.shape)}, "
                        f"not a leading batch dimension of {len(items)}"
                    )
            for index, item in enumerate(items):
                if not item.future.done():
                    item.future.set_result({name: value[index] for name, value in outputs.items()})
        except errors.SpotterError as err:
            _fail(items, err)
        except asyncio.CancelledError:
            _fail(items, errors.Unavailable("the gateway is shutting down", retry_after=self._retry_after))
            raise
        except Exception as err:  # a bug: every image of the batch sees it (and answers 500), none hangs
            logger.exception("batch for %s version %s failed unexpectedly", key.model, key.version)
            _fail(items, err)
        finally:
            lane.inflight.release()
            lane.wake.set()  # a batch waiting for a free slot may leave now

    def _gauge(self, lane: _Lane) -> None:
        metrics.QUEUE_DEPTH.labels(lane.key.model, str(lane.key.version)).set(len(lane.pending))

    @property
    def inflight_batches(self) -> int:
        """Predict calls in flight now, over all keys (read-only; the shadow canaries shed on it)."""
        return len(self._batches)


def _fail(items: list[_Item], err: BaseException) -> None:
    for item in items:
        if not item.future.done():
            item.future.set_exception(err)
