"""The batcher on its own: a recording stand-in for the model server (the batcher is what is under test)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import numpy as np
import pytest
from prometheus_client import REGISTRY

from services import errors
from services.gateway.batcher import Batcher, BatchKey

pytestmark = pytest.mark.anyio

KEY = BatchKey("demo", 1)


class Recorder:
    """A Predict stand-in: answers each image's first pixel back, records batch sizes, can be held or failed."""

    def __init__(self) -> None:
        self.batches: list[tuple[BatchKey, int]] = []
        self.gate: asyncio.Event | None = None
        self.error: Exception | None = None
        self.inflight = 0
        self.max_inflight = 0

    async def __call__(self, key: BatchKey, images: np.ndarray, request_id: str | None) -> Mapping[str, np.ndarray]:
        self.batches.append((key, len(images)))
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.error is not None:
                raise self.error
            return {"value": images[:, 0, 0, 0].astype(np.int32), "key": np.full(len(images), key.version)}
        finally:
            self.inflight -= 1


def image(value: int) -> np.ndarray:
    return np.full((2, 2, 3), value, dtype=np.uint8)


def make(recorder: Recorder, **overrides: float) -> Batcher:
    options = {
        "max_batch_size": 4,
        "max_batch_delay": 0.05,
        "max_queue_size": 64,
        "max_inflight_batches": 2,
        "retry_after": 2.0,
    }
    options.update(overrides)
    return Batcher(recorder, **options)  # type: ignore[arg-type]


async def test_a_full_batch_leaves_at_once_and_results_go_back_to_their_callers() -> None:
    recorder = Recorder()
    batcher = make(recorder, max_batch_delay=10.0)  # only size can make these batches leave
    results = await asyncio.wait_for(asyncio.gather(*(batcher.submit(KEY, image(i)) for i in range(8))), 5)
    assert [int(r["value"]) for r in results] == list(range(8))
    assert [size for _, size in recorder.batches] == [4, 4]
    await batcher.close()


async def test_a_partial_batch_leaves_after_the_delay() -> None:
    recorder = Recorder()
    batcher = make(recorder, max_batch_delay=0.02)
    results = await asyncio.wait_for(asyncio.gather(*(batcher.submit(KEY, image(i)) for i in range(3))), 5)
    assert [int(r["value"]) for r in results] == [0, 1, 2]
    assert [size for _, size in recorder.batches] == [3]
    await batcher.close()


async def test_batching_off_sends_every_image_alone() -> None:
    recorder = Recorder()
    batcher = make(recorder, max_batch_size=1)
    await asyncio.gather(*(batcher.submit(KEY, image(i)) for i in range(5)))
    assert [size for _, size in recorder.batches] == [1] * 5
    await batcher.close()


async def test_keys_batch_apart() -> None:
    recorder = Recorder()
    batcher = make(recorder, max_batch_delay=0.02)
    other = BatchKey("demo", 2)
    results = await asyncio.gather(*(batcher.submit(KEY if i % 2 else other, image(i)) for i in range(6)))
    assert [int(r["key"]) for r in results] == [2, 1, 2, 1, 2, 1]
    assert sorted((k.version, n) for k, n in recorder.batches) == [(1, 3), (2, 3)]
    await batcher.close()


async def test_a_fixed_batch_dimension_caps_the_batch() -> None:
    recorder = Recorder()
    batcher = make(recorder, max_batch_delay=10.0)
    fixed = BatchKey("odapi", 1, "inputs", max_batch=1)
    await asyncio.wait_for(asyncio.gather(*(batcher.submit(fixed, image(i)) for i in range(3))), 5)
    assert [size for _, size in recorder.batches] == [1, 1, 1]
    await batcher.close()


async def test_batches_fill_while_the_inflight_limit_is_reached() -> None:
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    batcher = make(recorder, max_batch_size=8, max_batch_delay=0.0, max_inflight_batches=1)
    first = asyncio.ensure_future(batcher.submit(KEY, image(0)))
    await asyncio.sleep(0.01)  # the first batch (one image) is in flight and held
    rest = [asyncio.ensure_future(batcher.submit(KEY, image(i))) for i in range(1, 6)]
    await asyncio.sleep(0.01)
    assert recorder.batches == [(KEY, 1)]
    assert batcher.pending == 5
    recorder.gate.set()
    await asyncio.wait_for(asyncio.gather(first, *rest), 5)
    assert [size for _, size in recorder.batches] == [1, 5]
    assert recorder.max_inflight == 1
    await batcher.close()


async def test_a_full_queue_is_refused_at_once() -> None:
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    batcher = make(recorder, max_batch_size=2, max_batch_delay=0.0, max_inflight_batches=1, max_queue_size=3)
    waiting = [asyncio.ensure_future(batcher.submit(KEY, image(i))) for i in range(2)]
    await asyncio.sleep(0.01)  # those two are in flight (held); the queue is empty again
    queued = [asyncio.ensure_future(batcher.submit(KEY, image(i))) for i in range(3)]
    await asyncio.sleep(0)
    with pytest.raises(errors.Overloaded) as refused:
        await asyncio.wait_for(batcher.submit(KEY, image(9)), 0.5)
    assert refused.value.retry_after == 2.0
    recorder.gate.set()
    await asyncio.wait_for(asyncio.gather(*waiting, *queued), 5)
    await batcher.close()


async def test_a_cancelled_caller_frees_its_place() -> None:
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    batcher = make(recorder, max_batch_size=1, max_batch_delay=0.0, max_inflight_batches=1, max_queue_size=2)
    running = asyncio.ensure_future(batcher.submit(KEY, image(0)))
    await asyncio.sleep(0.01)
    queued = [asyncio.ensure_future(batcher.submit(KEY, image(i))) for i in (1, 2)]
    await asyncio.sleep(0)
    assert batcher.pending == 2
    queued[0].cancel()
    await asyncio.sleep(0)
    assert batcher.pending == 1
    replacement = asyncio.ensure_future(batcher.submit(KEY, image(3)))  # fits in the freed place
    recorder.gate.set()
    results = await asyncio.wait_for(asyncio.gather(running, queued[1], replacement), 5)
    assert [int(r["value"]) for r in results] == [0, 2, 3]
    assert len(recorder.batches) == 3  # the cancelled image was never sent
    await batcher.close()


async def test_an_upstream_error_fails_every_image_of_its_batch() -> None:
    recorder = Recorder()
    recorder.error = errors.Unavailable("model server down", retry_after=1.0)
    batcher = make(recorder, max_batch_delay=0.01)
    results = await asyncio.gather(*(batcher.submit(KEY, image(i)) for i in range(4)), return_exceptions=True)
    assert all(isinstance(r, errors.Unavailable) for r in results)
    assert [size for _, size in recorder.batches] == [4]
    recorder.error = None
    assert int((await asyncio.wait_for(batcher.submit(KEY, image(7)), 5))["value"]) == 7  # and it recovers
    await batcher.close()


async def test_outputs_without_a_batch_dimension_are_an_upstream_error() -> None:
    async def broken(key: BatchKey, images: np.ndarray, request_id: str | None) -> Mapping[str, np.ndarray]:
        return {"value": np.zeros(1)}

    batcher = Batcher(broken, max_batch_size=4, max_batch_delay=0.01, max_queue_size=8, max_inflight_batches=1)
    results = await asyncio.gather(*(batcher.submit(KEY, image(i)) for i in range(2)), return_exceptions=True)
    assert all(isinstance(r, errors.UpstreamError) for r in results)
    await batcher.close()


async def test_closing_fails_what_waits() -> None:
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    batcher = make(recorder, max_batch_size=1, max_batch_delay=0.0, max_inflight_batches=1)
    futures = [asyncio.ensure_future(batcher.submit(KEY, image(i))) for i in range(3)]
    await asyncio.sleep(0.01)
    await batcher.close()
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert all(isinstance(r, errors.Unavailable) for r in results)
    with pytest.raises(errors.Unavailable):
        await batcher.submit(KEY, image(0))


async def test_an_image_past_its_queue_deadline_is_refused_not_served_late() -> None:
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    batcher = make(recorder, max_batch_size=1, max_inflight_batches=1, max_queue_wait=0.05)
    first = asyncio.create_task(batcher.submit(KEY, image(1)))  # leaves at once, then holds the only Predict slot
    await asyncio.sleep(0.02)
    assert [size for _, size in recorder.batches] == [1]
    late = asyncio.create_task(batcher.submit(KEY, image(2)))  # waits for the slot, longer than its deadline
    with pytest.raises(errors.Overloaded) as refused:
        await asyncio.wait_for(late, 5)
    assert refused.value.details["reason"] == "deadline"
    assert refused.value.retry_after == 2.0
    assert batcher.pending == 0  # it left the queue
    recorder.gate.set()
    assert int((await asyncio.wait_for(first, 5))["value"]) == 1  # what had left is still answered
    assert [size for _, size in recorder.batches] == [1]  # the late image never reached the model server
    await batcher.close()


async def test_a_batch_never_carries_an_image_past_its_deadline() -> None:
    # The deadline only bounds the time in the queue: an image whose batch left waits for its Predict call.
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    batcher = make(recorder, max_batch_size=2, max_batch_delay=0.0, max_queue_wait=0.05)
    pending = asyncio.gather(*(batcher.submit(KEY, image(i)) for i in range(2)))
    await asyncio.sleep(0.2)  # four deadlines while the Predict call holds them
    recorder.gate.set()
    assert [int(r["value"]) for r in await asyncio.wait_for(pending, 5)] == [0, 1]
    await batcher.close()


def dispatches(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "spotter_batch_dispatches_total", {"model": KEY.model, "version": str(KEY.version), "reason": reason}
    )
    return value or 0.0


async def test_without_work_conserving_a_lone_request_waits_for_the_delay() -> None:
    recorder = Recorder()
    batcher = make(recorder, max_batch_delay=30.0, work_conserving=False)
    task = asyncio.create_task(batcher.submit(KEY, image(7)))
    await asyncio.sleep(0.05)
    assert recorder.batches == [] and batcher.pending == 1  # the slot is free, but the batch waits to fill
    task.cancel()
    await batcher.close()


async def test_a_lone_request_leaves_at_once_when_a_slot_is_free() -> None:
    # Work-conserving: with a free Predict slot nothing waits for company, however long the delay may be.
    recorder = Recorder()
    batcher = make(recorder, max_batch_delay=30.0, work_conserving=True)
    before = {reason: dispatches(reason) for reason in ("idle", "full", "waited")}
    result = await asyncio.wait_for(batcher.submit(KEY, image(7)), 5)  # far sooner than the 30 s delay
    assert int(result["value"]) == 7
    assert [size for _, size in recorder.batches] == [1]
    assert dispatches("idle") == before["idle"] + 1
    assert (dispatches("full"), dispatches("waited")) == (before["full"], before["waited"])
    await batcher.close()


async def test_while_every_slot_is_busy_images_gather_and_leave_when_one_frees() -> None:
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    batcher = make(recorder, max_batch_delay=30.0, max_inflight_batches=1, work_conserving=True)
    waited = dispatches("waited")
    first = asyncio.create_task(batcher.submit(KEY, image(1)))
    await asyncio.sleep(0.02)
    assert [size for _, size in recorder.batches] == [1]  # left alone, at once: the slot was free
    rest = asyncio.gather(*(batcher.submit(KEY, image(i)) for i in (2, 3)))
    await asyncio.sleep(0.02)
    assert batcher.pending == 2  # the only slot is busy: they wait, together
    recorder.gate.set()
    assert [int(r["value"]) for r in await asyncio.wait_for(rest, 5)] == [2, 3]
    await asyncio.wait_for(first, 5)
    assert [size for _, size in recorder.batches] == [1, 2]  # left as one batch when the slot freed, not after 30 s
    assert dispatches("waited") == waited + 1
    await batcher.close()
