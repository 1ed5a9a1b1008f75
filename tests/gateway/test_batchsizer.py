"""Adaptive batch sizing: the batcher in front of a simulated upstream whose cost per batch size is given.

The upstream runs on a simulated clock (each Predict of ``n`` images advances it by ``cost(n)``), handed to the
batcher as its clock, so what the sizer learns depends only on the cost model and the order of events, never on this
machine's speed: the tests count batch sizes, they time nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import numpy as np
import pytest

from services.gateway.batcher import Batcher, BatchKey
from services.gateway.batchsizer import BatchSizer, size_buckets

pytestmark = pytest.mark.anyio

KEY = BatchKey("demo", 1)
Cost = Callable[[int], float]


def cpu_like(n: int) -> float:
    """Batching does not help: n images cost n times one (a small CPU already busy with two calls)."""
    return 0.02 * n


def gpu_like(n: int) -> float:
    """A batch costs about what one image costs (a GPU)."""
    return 0.002 + 0.0001 * n


def best_at_four(n: int) -> float:
    """Per-image time falls up to a batch of 4, then rises (the batch spills out of a cache)."""
    per_image = {1: 0.010, 2: 0.007, 4: 0.005, 8: 0.008, 16: 0.012}
    return per_image[max(size for size in per_image if size <= n)] * n


class SimulatedUpstream:
    """A Predict stand-in on a simulated clock; its cost model can be swapped while it runs."""

    def __init__(self, cost: Cost) -> None:
        self.cost = cost
        self.now = 0.0
        self.sizes: list[int] = []

    def clock(self) -> float:
        return self.now

    async def __call__(self, key: BatchKey, images: np.ndarray, request_id: str | None) -> Mapping[str, np.ndarray]:
        self.sizes.append(len(images))
        await asyncio.sleep(0)  # the other slot's call starts meanwhile, as it would on a real server
        self.now += self.cost(len(images))
        return {"value": images[:, 0, 0, 0].astype(np.int32)}


async def closed_loop(batcher: Batcher, clients: int, rounds: int) -> None:
    """``clients`` callers, each submitting its next image when the last one is answered."""

    async def client(index: int) -> None:
        for n in range(rounds):
            result = await batcher.submit(KEY, np.full((2, 2, 3), (index + n) % 250, dtype=np.uint8))
            assert int(result["value"]) == (index + n) % 250

    await asyncio.wait_for(asyncio.gather(*(client(i) for i in range(clients))), 60)


def adaptive(upstream: SimulatedUpstream, max_batch_size: int = 16) -> Batcher:
    return Batcher(
        upstream,
        max_batch_size=max_batch_size,
        max_batch_delay=0.005,
        max_queue_size=256,
        max_inflight_batches=2,
        adaptive=True,
        clock=upstream.clock,
    )


async def test_where_batching_does_not_help_batches_stay_small() -> None:
    upstream = SimulatedUpstream(cpu_like)
    batcher = adaptive(upstream)
    await closed_loop(batcher, clients=32, rounds=40)
    await batcher.close()
    assert max(upstream.sizes[-100:]) <= 2
    assert sum(size == 1 for size in upstream.sizes[-100:]) >= 80  # it tries 2 now and then, and goes back


async def test_where_batching_helps_batches_grow_to_the_maximum() -> None:
    upstream = SimulatedUpstream(gpu_like)
    batcher = adaptive(upstream)
    await closed_loop(batcher, clients=64, rounds=60)  # enough waiting to fill two batches of 16
    await batcher.close()
    assert upstream.sizes[1] == 1  # it starts small (the very first batch is whatever waited): growing is earned
    assert upstream.sizes[-40:-5].count(16) >= 30  # (the last few are the loop's callers running out)


async def test_it_settles_on_the_cheapest_size_per_image() -> None:
    upstream = SimulatedUpstream(best_at_four)
    batcher = adaptive(upstream)
    await closed_loop(batcher, clients=32, rounds=60)
    await batcher.close()
    tail = upstream.sizes[-60:]
    assert max(tail) <= 8
    assert tail.count(4) >= 40


async def test_it_shrinks_when_the_upstream_stops_gaining_from_batches() -> None:
    upstream = SimulatedUpstream(gpu_like)
    batcher = adaptive(upstream)
    await closed_loop(batcher, clients=64, rounds=60)
    assert max(upstream.sizes[-40:]) == 16
    upstream.cost = cpu_like  # the same model moved to a busy CPU
    upstream.sizes.clear()
    await closed_loop(batcher, clients=32, rounds=300)
    await batcher.close()
    assert max(upstream.sizes[-100:]) <= 2


async def test_the_learned_limit_never_passes_max_batch_size() -> None:
    upstream = SimulatedUpstream(gpu_like)
    batcher = adaptive(upstream, max_batch_size=6)
    await closed_loop(batcher, clients=32, rounds=30)
    await batcher.close()
    assert max(upstream.sizes) == 6


async def test_a_lone_client_teaches_it_nothing_and_is_sent_at_once() -> None:
    # Only calls made while every slot is busy are compared: a lone client's calls are not.
    upstream = SimulatedUpstream(gpu_like)
    batcher = adaptive(upstream)
    await closed_loop(batcher, clients=1, rounds=20)
    await batcher.close()
    assert upstream.sizes == [1] * 20


def test_size_buckets_end_at_the_maximum() -> None:
    assert size_buckets(16) == (1, 2, 4, 8, 16)
    assert size_buckets(12) == (1, 2, 4, 8, 12)
    assert size_buckets(1) == (1,)


def test_a_bigger_size_must_win_by_the_margin() -> None:
    sizer = BatchSizer(16, margin=0.1, samples=2)
    assert sizer.limit == 1  # it starts at batch 1
    for _ in range(2):
        sizer.observe(1, 0.010, saturated=True)
    assert sizer.limit == 2  # trying the next size
    for _ in range(2):
        sizer.observe(2, 2 * 0.0095, saturated=True)  # only 5 % cheaper per image: not enough
    assert (sizer.limit, sizer.settled) == (1, 1)


def test_it_climbs_at_once_while_bigger_batches_pay() -> None:
    sizer = BatchSizer(16, samples=1)
    for _ in range(8):  # a call at the settled size, one at the next: four steps up, none waiting for a probe
        sizer.observe(sizer.limit, 0.01, saturated=True)  # a batch costs what one image costs
    assert sizer.settled == 16


def test_unsaturated_calls_are_not_counted() -> None:
    sizer = BatchSizer(16, samples=1)
    sizer.observe(1, 0.01, saturated=False)
    assert sizer.per_image(1) is None and sizer.limit == 1
    sizer.observe(1, 0.01, saturated=True)
    assert sizer.per_image(1) == pytest.approx(0.01)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        BatchSizer(0)
    with pytest.raises(ValueError):
        BatchSizer(8, margin=1.0)
