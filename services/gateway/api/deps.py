"""Typed FastAPI dependencies: the objects the lifespan built, and the API-key check.

Routes take what they need as annotated parameters (``dataplane: DataplaneDep``); the objects live on ``app.state``
(built in :func:`services.gateway.app.create_app`'s lifespan).
The getters are ``async def`` although they only read an attribute: FastAPI runs a plain ``def`` dependency in its
thread pool, a thread hop per dependency per request, which under load made even a refused request cost milliseconds.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from redis.asyncio import Redis

from services.errors import PermissionDenied, Unauthenticated
from services.gateway.catalog import ModelCatalog
from services.gateway.config import GatewaySettings
from services.gateway.dataplane import Dataplane


async def get_settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


async def get_dataplane(request: Request) -> Dataplane:
    dataplane: Dataplane = request.app.state.dataplane
    return dataplane


async def get_catalog(request: Request) -> ModelCatalog:
    catalog: ModelCatalog = request.app.state.catalog
    return catalog


async def get_redis(request: Request) -> Redis:
    redis: Redis = request.app.state.redis
    return redis


SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]
DataplaneDep = Annotated[Dataplane, Depends(get_dataplane)]
CatalogDep = Annotated[ModelCatalog, Depends(get_catalog)]
RedisDep = Annotated[Redis, Depends(get_redis)]

# Declared as security schemes so that /docs shows them (and its "Authorize" button); auto_error=False because
# the check below decides, with our error bodies.
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key (SPOTTER_API_KEYS)")
_bearer = HTTPBearer(auto_error=False, description="an API key as a bearer token")


def check_api_key(settings: GatewaySettings, presented: str | None, *, what: str = "this endpoint") -> None:
    """Accept ``presented`` only if it equals a configured key (constant time over every key).

    Raises:
        PermissionDenied: no key is configured (so none can be right), or the key is not one of them.
        Unauthenticated: no key was presented.
    """
    if not settings.api_keys:
        raise PermissionDenied(
            f"{what} needs an API key, and the gateway has none configured: set SPOTTER_API_KEYS on the gateway"
        )
    if not presented:
        raise Unauthenticated(
            f"{what} needs an API key: send it as 'X-API-Key: <key>' or 'Authorization: Bearer <key>'"
        )
    given = presented.encode()
    matched = False
    for key in settings.api_keys:
        # Compare against every key, whatever matched before, so the time taken says nothing about the keys.
        matched |= hmac.compare_digest(given, key.get_secret_value().encode())
    if not matched:
        raise PermissionDenied("the API key is not valid")


async def require_api_key(
    settings: SettingsDep,
    header_key: Annotated[str | None, Security(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> None:
    """Dependency: the request must carry a valid API key (``X-API-Key`` or ``Authorization: Bearer``)."""
    check_api_key(settings, header_key or (bearer.credentials if bearer else None))


async def require_inference_key(
    settings: SettingsDep,
    header_key: Annotated[str | None, Security(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> None:
    """Dependency: like :func:`require_api_key`, but only when ``inference_requires_key`` is set."""
    if settings.inference_requires_key:
        check_api_key(settings, header_key or (bearer.credentials if bearer else None))


ApiKeyDep = Annotated[None, Depends(require_api_key)]
InferenceKeyDep = Annotated[None, Depends(require_inference_key)]
