"""Shadow canary routes: put a version in shadow, read how well it agrees with the served one, promote it.

All of them need an API key (they change or reveal what is served). The work lives in
:mod:`services.gateway.shadow`; docs/rollout.md explains the figures and the promotion rule.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, ConfigDict, Field

from services.gateway.api.deps import ApiKeyDep, ApiKeyIdentityDep, DataplaneDep
from services.gateway.api.schemas import error_responses

router = APIRouter(prefix="/v1", tags=["rollout"])

_ERRORS = error_responses(
    {
        401: "no API key",
        403: "an API key that is not valid",
        404: "unknown model or version, or the version is not in shadow",
        409: "the version is not loaded, cannot be compared, or (promote) has too few samples or agrees too little",
        422: "a sample rate outside [0, 1], or a model that is not a detector",
    }
)


class ShadowBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sample_rate: float | None = Field(
        None, ge=0.0, le=1.0, description="share of served detections also run through this version (0 to 1)"
    )


class PromoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    force: bool = Field(False, description="promote whatever the samples and agreement say")


@router.post("/models/{name}/versions/{version}:shadow", responses=_ERRORS)
async def start_shadow(
    name: str,
    version: int,
    request: Request,
    dataplane: DataplaneDep,
    _: ApiKeyDep,
    body: Annotated[ShadowBody | None, Body()] = None,
) -> dict[str, Any]:
    """Put a version in shadow: a sampled share of served detections also runs through it, off the request path."""
    request.state.spotter_model = name
    shadows = dataplane.shadows
    state = await shadows.start(name, version, body.sample_rate if body is not None else None)
    return shadows.report(state)


@router.get("/models/{name}/versions/{version}/shadow", responses=_ERRORS)
async def get_shadow(
    name: str, version: int, request: Request, dataplane: DataplaneDep, _: ApiKeyDep
) -> dict[str, Any]:
    """How a shadow version agrees with the served one so far, with 95 % intervals and latency of each."""
    request.state.spotter_model = name
    shadows = dataplane.shadows
    return shadows.report(shadows.get(name, version))


@router.delete("/models/{name}/versions/{version}/shadow", responses=_ERRORS)
async def stop_shadow(
    name: str, version: int, request: Request, dataplane: DataplaneDep, _: ApiKeyDep
) -> dict[str, Any]:
    """Take a version out of shadow; answers its last figures."""
    request.state.spotter_model = name
    shadows = dataplane.shadows
    return shadows.report(await shadows.stop(name, version))


@router.post("/models/{name}/versions/{version}:promote", responses=_ERRORS)
async def promote(
    name: str,
    version: int,
    request: Request,
    dataplane: DataplaneDep,
    who: ApiKeyIdentityDep,
    body: Annotated[PromoteBody | None, Body()] = None,
) -> dict[str, Any]:
    """Serve this version to requests that name none, if its shadow agreed enough (or with force)."""
    request.state.spotter_model = name
    force = body.force if body is not None else False
    return await dataplane.shadows.promote(name, version, force=force, who=who)
