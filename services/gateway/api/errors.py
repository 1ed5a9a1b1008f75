"""HTTP error answers: every error becomes ``{"error": {"code", "message", "details"?}}`` with its status.

The status of each :class:`~services.errors.SpotterError` class is decided once, in :mod:`services.gateway.calls`
(docs/architecture.md has the table); subclasses inherit their parent's status. Anything that is not one of ours is a
bug: logged with its traceback and answered 500 ``internal``.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from services import errors
from services.gateway import metrics
from services.gateway.admission import record_overload
from services.gateway.api.disconnect import ClientDisconnected, client_disconnected_handler
from services.gateway.calls import http_status

logger = logging.getLogger(__name__)

# Codes for Starlette's own HTTP exceptions (unknown route, wrong method, malformed multipart...).
_HTTP_CODES = {
    400: "invalid_input",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return {"error": body}


def _retry_after(exc: errors.SpotterError) -> dict[str, str]:
    seconds = getattr(exc, "retry_after", None)
    if seconds is None:
        return {}
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


async def _spotter_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.SpotterError)
    status = http_status(exc)
    model = getattr(request.state, "spotter_model", None)
    metrics.record_rejection(model, exc)
    if isinstance(exc, errors.Overloaded):  # counted by reason and logged as a rate, not one line per request
        record_overload(f"{request.method} {request.url.path}", exc)
    elif status >= 500:
        logger.warning("%s %s -> %d %s: %s", request.method, request.url.path, status, exc.code, exc.message)
    return JSONResponse(error_body(exc.code, exc.message, exc.details), status_code=status, headers=_retry_after(exc))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ())]
        where = loc[0] if loc else "request"
        name = ".".join(loc[1:]) or where
        problems.append({"parameter": name, "in": where, "message": str(err.get("msg", "invalid"))})
    message = "; ".join(f"{p['parameter']}: {p['message']}" for p in problems) or "invalid request"
    metrics.record_rejection(getattr(request.state, "spotter_model", None), errors.InvalidParameter(message))
    return JSONResponse(error_body("invalid_parameter", message, problems), status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    message = str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route {request.method} {request.url.path}; see /docs"
    return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unexpected error serving %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(error_body("internal", "internal error; the gateway log has the details"), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every exception into the one error body shape."""
    app.add_exception_handler(errors.SpotterError, _spotter_error)
    app.add_exception_handler(ClientDisconnected, client_disconnected_handler)
    app.add_exception_handler(ClientDisconnect, client_disconnected_handler)  # gone while its body was read
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
