"""Typed FastAPI dependencies: the objects the lifespan built, and the API-key check.

Routes take what they need as annotated parameters (``dataplane: DataplaneDep``); the objects live on ``app.state``
(built in :func:`services.gateway.app.create_app`'s lifespan).
The getters are ``async def`` although they only read an attribute: FastAPI runs a plain ``def`` dependency in its
thread pool, a thread hop per dependency per request, which under load made even a refused request cost milliseconds.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from services.gateway.calls import check_api_key
from services.gateway.config import GatewaySettings
from services.gateway.dataplane import Dataplane


async def get_settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


async def get_dataplane(request: Request) -> Dataplane:
    dataplane: Dataplane = request.app.state.dataplane
    return dataplane


SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]
DataplaneDep = Annotated[Dataplane, Depends(get_dataplane)]

# Declared as security schemes so that /docs shows them (and its "Authorize" button); auto_error=False because
# the check below decides, with our error bodies.
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key (SPOTTER_API_KEYS)")
_bearer = HTTPBearer(auto_error=False, description="an API key as a bearer token")


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


async def api_key_identity(
    settings: SettingsDep,
    header_key: Annotated[str | None, Security(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> str:
    """Dependency: check the API key like :func:`require_api_key` and answer who presented it, for audit logs.

    The identity is a fingerprint (``key:`` and 12 hex digits of the key's SHA-256), never the key itself.
    """
    presented = header_key or (bearer.credentials if bearer else None)
    check_api_key(settings, presented)
    return "key:" + hashlib.sha256((presented or "").encode()).hexdigest()[:12]


ApiKeyIdentityDep = Annotated[str, Depends(api_key_identity)]
