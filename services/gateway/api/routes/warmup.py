"""Warmup sample routes: how much of a model's real traffic is kept for its next version's warmup, and deleting it.

``GET /v1/models/{name}/warmup-sample`` and ``DELETE`` the same, with an API key: the sample is users' images, so
whoever may see or drop it is an operator. They work whether this gateway samples or not (another process may),
straight on Redis (:mod:`services.store.traffic_sample`), one short-lived connection per call in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

import redis
from fastapi import APIRouter, Path
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from services.errors import Unavailable
from services.gateway.api.deps import ApiKeyDep, SettingsDep
from services.gateway.api.schemas import error_responses
from services.gateway.config import GatewaySettings
from services.store.traffic_sample import SampleStore

router = APIRouter(prefix="/v1", tags=["models"])

_T = TypeVar("_T")
_ERRORS = error_responses(
    {
        401: "no API key",
        403: "a wrong API key",
        422: "a model name that is too long",
        503: "Redis can't be reached",
    }
)
ModelName = Annotated[str, Path(min_length=1, max_length=256, description="the model's name")]


class WarmupSampleBody(BaseModel):
    """A model's traffic sample, without its images."""

    model: str
    sampling: bool = Field(description="whether this gateway samples requests (SPOTTER_WARMUP_SAMPLES > 0)")
    slots: int = Field(description="this gateway's SPOTTER_WARMUP_SAMPLES")
    count: int = Field(description="requests offered since the sample (re)started")
    kept: int = Field(description="canvases held, what the next export's warmup can use")
    expires_in_seconds: int | None = Field(description="when the sample is deleted and restarts (None: no sample)")


class DeletedWarmupSample(BaseModel):
    model: str
    deleted: bool = Field(description="False when there was no sample")


async def _on_store(settings: GatewaySettings, work: Callable[[SampleStore], _T]) -> _T:
    def call() -> _T:
        connection = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=10)
        store = SampleStore(connection, ttl_seconds=settings.warmup_sample_ttl_seconds)
        try:
            return work(store)
        except redis.RedisError as exc:
            raise Unavailable(f"the warmup sample's store (Redis) can't be reached: {exc}") from exc
        finally:
            store.close()

    return await run_in_threadpool(call)


@router.get("/models/{name}/warmup-sample", responses=_ERRORS)
async def get_warmup_sample(name: ModelName, settings: SettingsDep, _: ApiKeyDep) -> WarmupSampleBody:
    """How many requests a model's warmup sample has seen and kept, and when it expires."""
    count, kept, ttl = await _on_store(settings, lambda store: store.summary(name))
    return WarmupSampleBody(
        model=name,
        sampling=settings.warmup_samples > 0,
        slots=settings.warmup_samples,
        count=count,
        kept=kept,
        expires_in_seconds=ttl,
    )


@router.delete("/models/{name}/warmup-sample", responses=_ERRORS)
async def delete_warmup_sample(name: ModelName, settings: SettingsDep, _: ApiKeyDep) -> DeletedWarmupSample:
    """Delete a model's warmup sample (the users' images it holds); sampling, if on, starts over."""
    deleted = await _on_store(settings, lambda store: store.clear(name))
    return DeletedWarmupSample(model=name, deleted=deleted)
