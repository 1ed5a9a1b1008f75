"""Where the gateway decodes: on the event loop for a small image while nothing else is served (no thread hop),
in a worker thread otherwise. Counted through ``spotter_decodes_total``; the answers are the same either way."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from services.gateway import metrics
from tests.gateway.helpers import RunningGateway, gateway_settings, running_gateway, solid
from tests.support.modelserver import ModelServerHandle

pytestmark = pytest.mark.integration

INLINE_PIXELS = 64 * 64


@pytest.fixture(scope="module")
def gateway(model_server: ModelServerHandle, tiny_models) -> Iterator[RunningGateway]:  # type: ignore[no-untyped-def]
    settings = gateway_settings(
        model_server.grpc_target,
        model_config_file=tiny_models / "models.config",
        model_root=tiny_models / "root",
        dynamic_input_size=32,
        inline_decode_max_pixels=INLINE_PIXELS,
    )
    with running_gateway(settings) as running:
        yield running


def decodes(where: str) -> float:
    return metrics.DECODES.labels("tiny", where)._value.get()  # type: ignore[attr-defined,no-any-return]


def detect(client: httpx.Client, body: bytes) -> dict[str, object]:
    response = client.post("/v1/models/tiny:detect?min_score=0", content=body, headers={"Content-Type": "image/png"})
    assert response.status_code == 200, response.text
    answer: dict[str, object] = response.json()
    return answer


def test_a_lone_small_image_is_decoded_on_the_loop_a_big_one_in_a_thread(gateway: RunningGateway) -> None:
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        before = {where: decodes(where) for where in ("loop", "thread")}
        small = detect(client, solid(48, 40))  # 1920 pixels
        assert (decodes("loop"), decodes("thread")) == (before["loop"] + 1, before["thread"])
        big = detect(client, solid(96, 80))  # 7680 pixels: past the limit
        assert (decodes("loop"), decodes("thread")) == (before["loop"] + 1, before["thread"] + 1)
    assert (small["width"], small["height"], big["width"], big["height"]) == (48, 40, 96, 80)
    assert len(small["detections"]) == len(big["detections"]) > 0  # type: ignore[arg-type]


def test_concurrent_requests_are_decoded_in_threads(gateway: RunningGateway) -> None:
    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        "/v1/models/tiny:detect?min_score=0",
                        content=solid(40, 40, value=50 + i),
                        headers={"Content-Type": "image/png"},
                    )
                    for i in range(16)
                )
            )

    before = decodes("thread")
    responses = asyncio.run(send_all())
    assert [r.status_code for r in responses] == [200] * 16
    # Requests that arrive while others are served go to a thread; at most the first few find the gateway idle.
    assert decodes("thread") - before >= 8
