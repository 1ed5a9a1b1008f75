"""Warmup from real traffic, the gateway's half: a bounded, uniform reservoir of each model's canvases in Redis,
off by default, never in the way of a served request (not even when Redis is gone), seen and cleared through
``/v1/models/{name}/warmup-sample``; the export job's ``warmup`` parameter is checked at submit."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Callable, Iterator

import httpx
import numpy as np
import pytest
import redis
from prometheus_client import REGISTRY
from pydantic import SecretStr, ValidationError
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from services.gateway.config import GatewaySettings
from services.gateway.tensors import to_ndarray
from services.gateway.traffic_sample import QUEUE_SIZE, TrafficSampler
from services.gen.tfs import tensor_pb2
from services.store.traffic_sample import KEY_PREFIX, SampleStore, reservoir_slot, sample_key
from tests.gateway.conftest import TINY_SIZE
from tests.gateway.helpers import gateway_settings, running_gateway, solid
from tests.support.modelserver import ModelServerHandle
from tests.support.processes import free_port

KEY = "warmup-key"
HEADERS = {"X-API-Key": KEY}


def outcomes(model: str) -> Counter[str]:
    """The sampler's counts for ``model`` so far (the process's one registry: tests compare before and after)."""
    found: Counter[str] = Counter()
    for outcome in ("kept", "passed", "dropped", "failed"):
        value = REGISTRY.get_sample_value("spotter_traffic_samples_total", {"model": model, "outcome": outcome})
        found[outcome] = int(value or 0)
    return found


def wait_until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll ``check()`` until it is true; fail loudly when it is not within ``timeout``."""
    ok = Retrying(
        retry=retry_if_result(lambda done: not done),
        stop=stop_after_delay(timeout),
        wait=wait_fixed(0.05),
        retry_error_callback=lambda _: False,
    )(check)
    assert ok, f"{what} did not happen within {timeout:g}s"


def canvas(value: int, size: int = 8) -> np.ndarray:
    return np.full((size, size, 3), value, np.uint8)


def slot_values(sample_tensors: list[bytes]) -> list[int]:
    """The fill value of each kept canvas (every test canvas is one colour)."""
    values = []
    for data in sample_tensors:
        array = to_ndarray(tensor_pb2.TensorProto.FromString(data))
        assert array.dtype == np.uint8 and array.shape == (8, 8, 3)
        values.append(int(array[0, 0, 0]))
    return values


@pytest.fixture
def store(redis_url: str) -> Iterator[SampleStore]:
    sample_store = SampleStore(redis.Redis.from_url(redis_url), ttl_seconds=600)
    yield sample_store
    sample_store.close()


# -- Algorithm R ---------------------------------------------------------------------------------------------------


def test_the_first_k_fill_the_slots_then_each_item_is_kept_with_probability_k_over_n() -> None:
    rng = random.Random(7)
    assert [reservoir_slot(n, 4, rng) for n in range(1, 5)] == [0, 1, 2, 3]
    assert reservoir_slot(1, 0, rng) is None

    # Uniform: over many streams of 30 items into 6 slots, every item ends in the sample about 6/30 of the time.
    trials, n, k = 3000, 30, 6
    kept: Counter[int] = Counter()
    for _ in range(trials):
        slots: dict[int, int] = {}
        for item in range(1, n + 1):
            slot = reservoir_slot(item, k, rng)
            if slot is not None:
                slots[slot] = item
        assert len(slots) == k
        kept.update(slots.values())
    expected = trials * k / n  # 600
    assert set(kept) == set(range(1, n + 1))
    assert all(0.8 * expected < count < 1.2 * expected for count in kept.values()), kept


# -- the sampler on a real Redis ------------------------------------------------------------------------------------


def test_the_sample_is_bounded_counts_every_request_and_expires(store: SampleStore) -> None:
    async def offer_one_by_one() -> None:
        sampler = TrafficSampler(store, 5, rng=random.Random(1))
        sampler.start()
        for value in range(40):
            sampler.offer("m", [canvas(value)])
            await sampler.drain()
        await sampler.close()

    before = outcomes("m")
    asyncio.run(offer_one_by_one())
    sample = store.read("m")
    assert sample.count == 40 and len(sample.tensors) == 5
    values = slot_values(sample.tensors)
    assert len(set(values)) == 5 and all(0 <= v < 40 for v in values)
    counted = outcomes("m") - before
    assert counted["kept"] >= 5 and counted["kept"] + counted["passed"] == 40 and counted["dropped"] == 0
    count, kept, ttl = store.summary("m")
    assert (count, kept) == (40, 5) and ttl is not None and 0 < ttl <= 600


def test_offers_past_the_queue_are_dropped_not_waited_for(store: SampleStore) -> None:
    async def burst() -> None:
        sampler = TrafficSampler(store, 50)
        sampler.start()
        for value in range(QUEUE_SIZE + 9):  # no await in between: the background task gets no turn
            sampler.offer("burst", [canvas(value % 256)])
        await sampler.drain()
        await sampler.close()

    before = outcomes("burst")
    asyncio.run(burst())
    assert (outcomes("burst") - before)["dropped"] == 9
    assert store.read("burst").count == QUEUE_SIZE


def test_one_view_of_a_tiled_request_is_its_candidate(store: SampleStore) -> None:
    async def tiled() -> None:
        sampler = TrafficSampler(store, 10, rng=random.Random(3))
        sampler.start()
        sampler.offer("tiles", [canvas(v) for v in (1, 2, 3)])
        await sampler.drain()
        await sampler.close()

    asyncio.run(tiled())
    sample = store.read("tiles")
    assert sample.count == 1 and slot_values(sample.tensors)[0] in (1, 2, 3)


# -- through a running gateway --------------------------------------------------------------------------------------


def test_sampling_is_off_by_default(model_server: ModelServerHandle, redis_url: str) -> None:
    assert GatewaySettings(_env_file=None).warmup_samples == 0
    settings = gateway_settings(model_server.grpc_target, redis_url=redis_url)
    with running_gateway(settings) as gateway, httpx.Client(base_url=gateway.url, timeout=30) as http:
        assert gateway.app.state.traffic_sampler is None
        for _ in range(3):
            response = http.post("/v1/models/tiny:detect", content=solid(16, 16), headers={"content-type": "image/png"})
            assert response.status_code == 200, response.text
    assert redis.Redis.from_url(redis_url).keys(f"{KEY_PREFIX}*") == []


def test_served_requests_fill_the_sample_which_an_operator_can_see_and_delete(
    model_server: ModelServerHandle, redis_url: str, store: SampleStore
) -> None:
    settings = gateway_settings(
        model_server.grpc_target, redis_url=redis_url, warmup_samples=3, api_keys=[SecretStr(KEY)]
    )
    with running_gateway(settings) as gateway, httpx.Client(base_url=gateway.url, timeout=30) as http:
        for value in range(7):
            response = http.post(
                "/v1/models/tiny:detect", content=solid(20, 12, value * 30), headers={"content-type": "image/png"}
            )
            assert response.status_code == 200, response.text
        wait_until(lambda: store.read("tiny").count == 7, "seven counted requests")

        shown = http.get("/v1/models/tiny/warmup-sample", headers=HEADERS)
        assert shown.status_code == 200, shown.text
        body = shown.json()
        assert body | {"expires_in_seconds": None} == {
            "model": "tiny",
            "sampling": True,
            "slots": 3,
            "count": 7,
            "kept": 3,
            "expires_in_seconds": None,
        }
        assert 0 < body["expires_in_seconds"] <= settings.warmup_sample_ttl_seconds
        for data in store.read("tiny").tensors:  # the letterboxed canvases, at the model's size
            assert to_ndarray(tensor_pb2.TensorProto.FromString(data)).shape == (TINY_SIZE, TINY_SIZE, 3)

        assert http.get("/v1/models/tiny/warmup-sample").status_code == 401
        assert http.delete("/v1/models/tiny/warmup-sample").status_code == 401
        assert http.delete("/v1/models/tiny/warmup-sample", headers=HEADERS).json() == {
            "model": "tiny",
            "deleted": True,
        }
        assert redis.Redis.from_url(redis_url).exists(sample_key("tiny")) == 0
        assert http.delete("/v1/models/tiny/warmup-sample", headers=HEADERS).json()["deleted"] is False
        cleared = http.get("/v1/models/tiny/warmup-sample", headers=HEADERS).json()
        assert (cleared["count"], cleared["kept"], cleared["expires_in_seconds"]) == (0, 0, None)
        too_long = http.get(f"/v1/models/{'m' * 300}/warmup-sample", headers=HEADERS)
        assert too_long.status_code == 422 and too_long.json()["error"]["code"]


def test_requests_are_served_while_redis_is_gone(
    model_server: ModelServerHandle, caplog: pytest.LogCaptureFixture
) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    settings = gateway_settings(
        model_server.grpc_target, redis_url=nowhere, warmup_samples=4, api_keys=[SecretStr(KEY)]
    )
    before = outcomes("tiny")
    caplog.set_level(logging.WARNING, logger="services.gateway.traffic_sample")
    with running_gateway(settings) as gateway, httpx.Client(base_url=gateway.url, timeout=30) as http:
        for _ in range(6):
            response = http.post("/v1/models/tiny:detect", content=solid(16, 16), headers={"content-type": "image/png"})
            assert response.status_code == 200, response.text

        def settled() -> bool:
            counted = outcomes("tiny") - before
            return counted["failed"] + counted["dropped"] == 6

        wait_until(settled, "six offers failed or dropped")
        counted = outcomes("tiny") - before
        assert counted["failed"] >= 1 and counted["kept"] == counted["passed"] == 0
        unreachable = http.get("/v1/models/tiny/warmup-sample", headers=HEADERS)
        assert unreachable.status_code == 503 and "Redis" in unreachable.json()["error"]["message"]
    paused = [r for r in caplog.records if "traffic sampling paused" in r.getMessage()]
    assert len(paused) == 1  # logged once per outage, not per request


# -- settings and the export job's parameter ------------------------------------------------------------------------


@pytest.mark.parametrize("value", [-1, 513])
def test_warmup_samples_out_of_range_is_refused(value: int) -> None:
    with pytest.raises(ValidationError, match="warmup_samples"):
        GatewaySettings(_env_file=None, warmup_samples=value)


def test_an_unknown_warmup_source_is_a_422_naming_it(model_server: ModelServerHandle, redis_url: str) -> None:
    settings = gateway_settings(model_server.grpc_target, redis_url=redis_url, api_keys=[SecretStr(KEY)])
    with running_gateway(settings) as gateway, httpx.Client(base_url=gateway.url, timeout=30) as http:
        for body in (
            {"type": "export", "run": "r", "model": "m", "warmup": "recorded"},
            {"type": "train", "dataset": "d", "export": {"model": "m", "warmup": 3}},
        ):
            response = http.post("/v1/jobs", json=body, headers=HEADERS)
            assert response.status_code == 422, response.text
            assert "warmup" in response.text
    assert redis.Redis.from_url(redis_url).keys("rq:*") == []  # nothing was queued
