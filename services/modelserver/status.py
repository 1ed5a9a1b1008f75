"""TFS's error model: a canonical status code and a message, as TensorFlow Serving answers them.

The model server mirrors TFS's codes (``NOT_FOUND`` for an unknown model, ``INVALID_ARGUMENT`` for a bad input,
``FAILED_PRECONDITION`` for an unknown predict signature...) rather than the gateway's HTTP-oriented
:mod:`services.errors`, because clients (the gateway among them) must see what real TFS would answer. The REST side
maps codes to HTTP statuses with TFS's own table (``http_server.cc``).
"""

from __future__ import annotations

import grpc

# TFS's ToHTTPStatusCode: the HTTP status its REST API answers for each canonical code.
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def code_from_number(number: int) -> grpc.StatusCode:
    """The gRPC status code for a canonical code number (``tensorflow.error.Code``); UNKNOWN if there is none."""
    return _BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


class ServingError(Exception):
    """A request or a load failed with a canonical status ``code`` and TFS's ``message``."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)

    def __repr__(self) -> str:
        return f"ServingError({self.code.name}, {self.message!r})"


def invalid_argument(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def failed_precondition(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.FAILED_PRECONDITION, message)


def internal(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INTERNAL, message)
