"""What every ``spotter.v1`` call goes through, once: the one interceptor.

For each call it sets the request id (the client's ``x-request-id`` when sane, else a new one; returned in the
initial metadata and put in :data:`services.logs.request_id_var`, which the batcher and the model-server client
read), checks the API key where one is needed (the REST side's check), bounds the call by its deadline (the
remaining time bounds the dataplane's wait: when it runs out the work is cancelled, its batch-queue places freed,
and the answer is DEADLINE_EXCEEDED), records the request metrics, and maps :mod:`services.errors` to gRPC statuses
(:mod:`services.grpc_errors`). Anything else is a bug: logged with its traceback, answered INTERNAL.

Metrics are the REST API's (``spotter_request_duration_seconds``, ``spotter_inflight_requests``,
``spotter_rejected_requests_total``): ``endpoint`` is ``grpc_`` and the method's name in snake case
(``grpc_detect``...), and ``status`` is the HTTP status REST answers for the same outcome (200, 422, 503...; 499
for a client that went away), so dashboards and alerts count both transports alike. A ``DetectStream`` records each
frame as one request (see :mod:`services.gateway.rpc.service`); the stream itself only when it is refused whole.

Servicer methods tell the interceptor which model and version a call was about through :func:`current_call`, as
REST routes do through ``request.state``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from services import errors
from services.gateway import metrics
from services.gateway.admission import record_overload
from services.gateway.calls import CLIENT_CLOSED_REQUEST, check_api_key, http_status, request_id_from
from services.gateway.config import GatewaySettings
from services.gen.spotter.v1 import detection_pb2
from services.grpc_errors import (
    API_KEY_KEY,
    AUTHORIZATION_KEY,
    ERROR_CODE_KEY,
    REQUEST_ID_KEY,
    error_trailers,
    grpc_status,
)
from services.logs import request_id_var

logger = logging.getLogger(__name__)

SERVICE = detection_pb2.DESCRIPTOR.services_by_name["DetectionService"].full_name
_GATEWAY_TIMEOUT = 504
_INTERNAL = (
    grpc.StatusCode.INTERNAL,
    "internal error; the gateway log has the details",
    ((ERROR_CODE_KEY, errors.SpotterError.code),),
)
_T = TypeVar("_T")
_Failure = tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]]


@dataclass(slots=True)
class CallState:
    """What a servicer method tells the interceptor about its call: the model and the version that answered."""

    endpoint: str
    model: str | None = None
    version: int | None = None


_current: ContextVar[CallState | None] = ContextVar("spotter_grpc_call", default=None)


def current_call() -> CallState:
    """The state of the call being served (a detached one outside the interceptor, e.g. in a unit test)."""
    return _current.get() or CallState("grpc_unknown")


def endpoint_name(method: str) -> str:
    """``/spotter.v1.DetectionService/DetectStream`` -> ``grpc_detect_stream``."""
    name = method.rsplit("/", 1)[-1]
    return "grpc_" + re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def record_request(endpoint: str, model: str | None, version: int | None, status: int, seconds: float) -> None:
    """One observation of ``spotter_request_duration_seconds``, labelled as REST labels its requests."""
    metrics.REQUEST_DURATION.labels(
        endpoint, metrics.model_label(model), "" if version is None else str(version), str(status)
    ).observe(seconds)


def record_failure(endpoint: str, model: str | None, exc: errors.SpotterError) -> int:
    """Count a request answered with one of our errors; its HTTP-equivalent status (5xx are logged)."""
    status = http_status(exc)
    metrics.record_rejection(model, exc)
    if isinstance(exc, errors.Overloaded):  # counted by reason and logged as a rate, not one line per request
        record_overload(endpoint, exc)
    elif status >= 500:
        logger.warning("%s -> %s %s: %s", endpoint, grpc_status(exc).name, exc.code, exc.message)
    return status


def presented_key(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The API key in ``x-api-key``, else in ``authorization: Bearer <key>``."""
    values = {key: value for key, value in metadata or () if isinstance(value, str)}
    if values.get(API_KEY_KEY):
        return values[API_KEY_KEY]
    scheme, _, credentials = values.get(AUTHORIZATION_KEY, "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip() or None


def request_id_of(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The client's ``x-request-id`` when it is short and plain (the REST rule), else a new one."""
    given = next((v for k, v in metadata or () if k == REQUEST_ID_KEY and isinstance(v, str)), None)
    return request_id_from(given)


class ServiceInterceptor(grpc.aio.ServerInterceptor):
    """Request id, API key, deadline, metrics and error mapping around every ``spotter.v1`` method.

    Health checking and reflection pass through untouched: they need no key and are not requests for metrics.
    """

    def __init__(self, settings: GatewaySettings) -> None:
        self._settings = settings

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(f"/{SERVICE}/"):
            return handler
        endpoint = endpoint_name(method)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, endpoint),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._stream(handler.stream_stream, endpoint),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # spotter.v1 has no unary-stream or stream-unary methods

    def _unary(self, behavior: Callable[..., Awaitable[Any]], endpoint: str) -> Callable[..., Any]:
        async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            call = CallState(endpoint, model=getattr(request, "model", None) or None)
            call_token = _current.set(call)
            id_token = request_id_var.set(request_id_of(context.invocation_metadata()))
            inflight = metrics.INFLIGHT_REQUESTS.labels(endpoint)
            inflight.inc()
            start = time.perf_counter()
            status = 500
            failure: _Failure | None = None
            try:
                await context.send_initial_metadata(((REQUEST_ID_KEY, request_id_var.get() or ""),))
                self._authenticate(context)
                response = await _within_deadline(context, behavior(request, context))
                status = 200
                return response
            except errors.SpotterError as err:
                status = record_failure(endpoint, call.model, err)
                failure = (grpc_status(err), err.message, error_trailers(err))
            except asyncio.CancelledError:
                status = _cancelled_status(context)
                raise
            except Exception:
                logger.exception("unexpected error serving %s", endpoint)
                failure = _INTERNAL
            finally:
                record_request(endpoint, call.model, call.version, status, time.perf_counter() - start)
                inflight.dec()
                request_id_var.reset(id_token)
                _current.reset(call_token)
            # Outside the try: abort raises, and that must not be taken for the servicer's error.
            await context.abort(*failure)

        return unary

    def _stream(self, behavior: Callable[..., Any], endpoint: str) -> Callable[..., Any]:
        async def stream(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            call = CallState(endpoint)
            call_token = _current.set(call)
            id_token = request_id_var.set(request_id_of(context.invocation_metadata()))
            start = time.perf_counter()
            status: int | None = None  # the frames record themselves; the stream only when it is refused whole
            failure: _Failure | None = None
            try:
                await context.send_initial_metadata(((REQUEST_ID_KEY, request_id_var.get() or ""),))
                self._authenticate(context)
                # The deadline ends the call (gRPC cancels it), which cancels the frames in flight.
                async for response in behavior(requests, context):
                    yield response
            except errors.SpotterError as err:
                status = record_failure(endpoint, call.model, err)
                failure = (grpc_status(err), err.message, error_trailers(err))
            except Exception:
                logger.exception("unexpected error serving %s", endpoint)
                status, failure = 500, _INTERNAL
            finally:
                if status is not None:
                    record_request(endpoint, call.model, None, status, time.perf_counter() - start)
                # A generator that gRPC abandons is closed later from another context, where the tokens are not
                # valid; the call's own task (and its context) is gone by then anyway.
                with contextlib.suppress(ValueError):
                    request_id_var.reset(id_token)
                    _current.reset(call_token)
            if failure is not None:
                await context.abort(*failure)

        return stream

    def _authenticate(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        if self._settings.inference_requires_key:
            check_api_key(self._settings, presented_key(context.invocation_metadata()), what="this method")


async def _within_deadline(context: grpc.aio.ServicerContext[Any, Any], work: Awaitable[_T]) -> _T:
    """Await ``work`` for at most the call's remaining time (no limit when the client set no deadline)."""
    remaining = context.time_remaining()
    scope = asyncio.timeout(remaining)
    try:
        async with scope:
            return await work
    except TimeoutError:
        if not scope.expired():
            raise
        raise errors.DeadlineExceeded(
            f"the call's deadline ({remaining:.3g}s) passed before the answer was ready; allow more time"
        ) from None


def _cancelled_status(context: grpc.aio.ServicerContext[Any, Any]) -> int:
    """499 for a client that went away, 504 when gRPC ended the call at its deadline."""
    remaining = context.time_remaining()
    return _GATEWAY_TIMEOUT if remaining is not None and remaining <= 0 else CLIENT_CLOSED_REQUEST
