"""Per-request context for HTTP: the request id, in-flight and duration metrics; a deadline for request bodies.

A plain ASGI middleware (not ``BaseHTTPMiddleware``: no extra task per request, and the request id context variable
set here is the one the route, the batcher and the TFS client see). The route is known only once the router has
matched it, so the in-flight gauge is kept by an app-wide dependency (:func:`track_inflight`) and the duration is
labelled after the answer, from ``scope["route"]``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway import metrics
from services.gateway.calls import REQUEST_ID_HEADER, request_id_from
from services.logs import request_id_var

logger = logging.getLogger(__name__)


class RequestContextMiddleware:
    """Sets the request id (accepted or made, returned in ``X-Request-ID``) and records request metrics.

    The ``endpoint`` label is the route's name (``detect``, ``list_models``...), never the raw path; the ``model``
    and ``version`` labels come from what the route put in ``request.state`` (``spotter_model``,
    ``spotter_version``), the model passed through :func:`services.gateway.metrics.model_label`.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(Headers(scope=scope).get(REQUEST_ID_HEADER))
        token = request_id_var.set(request_id)
        state = scope.setdefault("state", {})
        status = 500  # what it was if the app raised before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            version = state.get("spotter_version")
            metrics.REQUEST_DURATION.labels(
                endpoint_of(scope),
                metrics.model_label(state.get("spotter_model")),
                "" if version is None else str(version),
                str(status),
            ).observe(time.perf_counter() - start)
            request_id_var.reset(token)


def endpoint_of(scope: Scope) -> str:
    """The ``endpoint`` label: the matched route's name, or ``unmatched`` (never the raw path)."""
    route = scope.get("route")
    return str(getattr(route, "name", None) or "unmatched")


async def track_inflight(request: Request) -> AsyncIterator[None]:
    """App-wide dependency: counts the request in ``spotter_inflight_requests`` while its route runs."""
    gauge = metrics.INFLIGHT_REQUESTS.labels(endpoint_of(request.scope))
    gauge.inc()
    try:
        yield
    finally:
        gauge.dec()


class BodyReadTimeout:
    """A request body must keep coming: a pause longer than ``idle_seconds`` between its bytes, or an average rate
    under ``min_bytes_per_second`` once the first ``idle_seconds`` are over, is answered ``408`` (and the connection
    closed), so a client that stalls or trickles its upload holds a request for seconds, not minutes.

    It wraps ``receive`` while the body is still coming; once the last body message has arrived, ``receive`` (the
    disconnect watch of :mod:`services.gateway.api.disconnect`) waits without a limit. The 408 is raised from
    ``receive``, inside the route that reads the body, so it is answered by the error handlers like any other error.
    """

    def __init__(self, app: ASGIApp, *, idle_seconds: float, min_bytes_per_second: float) -> None:
        self.app = app
        self.idle_seconds = idle_seconds
        self.min_bytes_per_second = min_bytes_per_second

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        received = 0
        body_done = False
        loop = asyncio.get_running_loop()
        start: float | None = None  # the app's first read: time the app spends before it is not the client's

        async def receive_in_time() -> Message:
            nonlocal received, body_done, start
            if body_done:
                return await receive()
            if start is None:
                start = loop.time()
            wait = self.idle_seconds
            if self.min_bytes_per_second > 0:
                budget = start + self.idle_seconds + received / self.min_bytes_per_second - loop.time()
                wait = min(wait, max(budget, 0.0))
            try:
                message = await asyncio.wait_for(receive(), wait)
            except TimeoutError:
                raise self._timed_out(
                    received, declared, loop.time() - start, stalled=wait >= self.idle_seconds
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
            else:
                body_done = True  # http.disconnect: nothing more will come
            return message

        await self.app(scope, receive_in_time, send)

    def _timed_out(self, received: int, declared: str | None, elapsed: float, *, stalled: bool) -> HTTPException:
        of = f" of {declared}" if declared else ""
        if stalled:
            message = (
                f"the request body stalled: no bytes for {self.idle_seconds:g} s after {received}{of} bytes; "
                "send the body without pauses"
            )
        else:
            message = (
                f"the request body arrives too slowly: {received}{of} bytes in {elapsed:.1f} s; the gateway needs "
                f"at least {self.min_bytes_per_second:g} bytes per second"
            )
        logger.info("answering 408: %s", message)
        # The rest of the body may still come: close the connection rather than read it as the next request.
        return HTTPException(408, message, headers={"Connection": "close"})
