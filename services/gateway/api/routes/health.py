"""Liveness, readiness and the Prometheus metrics."""

from __future__ import annotations

import math

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.gateway.api.deps import DataplaneDep, SettingsDep
from services.gateway.api.errors import error_body
from services.gateway.api.schemas import ErrorResponse, ReadinessResponse

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process is up and serving HTTP."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"model": ErrorResponse, "description": "not ready, with the reason"}})
async def readyz(dataplane: DataplaneDep, settings: SettingsDep) -> Response:
    """Readiness: the model server answers and at least one model has an AVAILABLE version."""
    readiness = await dataplane.readiness()
    body = ReadinessResponse(
        ready=readiness.ready,
        reason=readiness.reason,
        model_server_up=readiness.model_server_up,
        models=readiness.models,
    )
    if readiness.ready:
        return JSONResponse(body.model_dump())
    return JSONResponse(
        error_body("unavailable", readiness.reason, body.model_dump()),
        status_code=503,
        headers={"Retry-After": str(max(1, math.ceil(settings.retry_after_seconds)))},
    )


@router.get("/metrics", response_class=Response)
def metrics() -> Response:
    """Prometheus metrics in the text exposition format."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
