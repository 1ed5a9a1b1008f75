"""The one mapping between :mod:`services.errors` and gRPC status codes, used by the server and by the client.

The server answers an error with the status of its class (docs/architecture.md's table) and puts Spotter's error
code in the trailing metadata ``spotter-error-code`` (plus ``retry-after`` when the error has one, and
``spotter-error-details`` as JSON when it has details). The client turns a status back into the same class: by that
code when the server sent one, else by the status alone (the inverse of the table, first class listed wins).

Import-light on purpose (grpc and :mod:`services.errors` only): the gateway's gRPC server
(:mod:`services.gateway.rpc.interceptors`) and the client (:mod:`services.client.rpc`) both import it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import grpc

from services import errors

REQUEST_ID_KEY = "x-request-id"
API_KEY_KEY = "x-api-key"
AUTHORIZATION_KEY = "authorization"
ERROR_CODE_KEY = "spotter-error-code"
ERROR_DETAILS_KEY = "spotter-error-details"
RETRY_AFTER_KEY = "retry-after"

_MAX_DETAILS_CHARS = 4096  # metadata is not the place for a long document; the message says what to fix

# Order matters for the inverse: for a status, the first class listed is what a client raises when the server sent
# no error code (a gRPC-level error: RESOURCE_EXHAUSTED for a message over the size limit is PayloadTooLarge).
GRPC_STATUS: dict[type[errors.SpotterError], grpc.StatusCode] = {
    errors.InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    errors.InvalidParameter: grpc.StatusCode.INVALID_ARGUMENT,
    errors.UnsupportedMediaType: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotAcceptable: grpc.StatusCode.INVALID_ARGUMENT,
    errors.PayloadTooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.Conflict: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.UpstreamError: grpc.StatusCode.INTERNAL,
}

_BY_STATUS: dict[grpc.StatusCode, type[errors.SpotterError]] = {}
for _cls, _status in GRPC_STATUS.items():
    _BY_STATUS.setdefault(_status, _cls)


def grpc_status(exc: errors.SpotterError) -> grpc.StatusCode:
    """The status of one of our errors: the nearest class in its MRO that has one; INTERNAL if none."""
    return _status_of_class(type(exc))


def retry_after_seconds(exc: errors.SpotterError) -> float | None:
    """The error's ``retry_after``, for the errors that have one."""
    seconds = getattr(exc, "retry_after", None)
    return None if seconds is None else float(seconds)


def error_trailers(exc: errors.SpotterError) -> tuple[tuple[str, str], ...]:
    """The trailing metadata that goes with the error's status."""
    trailers = [(ERROR_CODE_KEY, exc.code)]
    seconds = retry_after_seconds(exc)
    if seconds is not None:
        trailers.append((RETRY_AFTER_KEY, str(max(1, math.ceil(seconds)))))  # whole seconds, as HTTP's Retry-After
    if exc.details is not None:
        text = json.dumps(exc.details, default=str, ensure_ascii=True, separators=(",", ":"))
        if len(text) <= _MAX_DETAILS_CHARS:
            trailers.append((ERROR_DETAILS_KEY, text))
    return tuple(trailers)


def error_from_status(
    status: grpc.StatusCode,
    message: str,
    metadata: Iterable[tuple[str, str | bytes]] | Mapping[str, str | bytes] = (),
) -> errors.SpotterError:
    """The :mod:`services.errors` instance for a status the server answered (the inverse of :func:`grpc_status`).

    The server's ``spotter-error-code`` picks the exact class when it names one whose status is ``status``; else the
    status alone does; a status we never send (UNKNOWN, CANCELLED, UNIMPLEMENTED...) is a plain ``SpotterError``.
    """
    items = metadata.items() if isinstance(metadata, Mapping) else metadata
    values = {key: value.decode() if isinstance(value, bytes) else value for key, value in items}
    code = values.get(ERROR_CODE_KEY, "")
    known = errors.error_class(code)
    cls = known
    if cls is None or _status_of_class(cls) != status:
        cls = _BY_STATUS.get(status, errors.SpotterError)
    details: Any = None
    if ERROR_DETAILS_KEY in values:
        try:
            details = json.loads(values[ERROR_DETAILS_KEY])
        except ValueError:
            details = values[ERROR_DETAILS_KEY]
    text = message or f"the gateway answered {status.name}"
    error: errors.SpotterError
    if issubclass(cls, errors.Overloaded | errors.Unavailable):
        retry = _float(values.get(RETRY_AFTER_KEY))
        error = cls(text, retry_after=1.0 if retry is None else retry, details=details)
    else:
        error = cls(text, details=details)
    if code and known is None:
        error.code = code  # a newer gateway's code: the class goes by the status, the code is kept
    return error


def _status_of_class(cls: type[errors.SpotterError]) -> grpc.StatusCode:
    for base in cls.__mro__:
        status = GRPC_STATUS.get(base)
        if status is not None:
            return status
    return grpc.StatusCode.INTERNAL


def _float(text: str | None) -> float | None:
    try:
        return None if text is None else float(text)
    except ValueError:
        return None
