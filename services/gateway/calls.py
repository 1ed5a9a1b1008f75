"""What every call to the gateway has, over HTTP and gRPC alike: its API key check, its request id, the status its
error maps to (HTTP's, also the ``status`` label of the gRPC metrics), and 499 for a client that went away.

Transport-neutral, so that ``api/`` (FastAPI) and ``rpc/`` (grpc.aio) each build on it and neither imports the other.
"""

from __future__ import annotations

import hmac
import re
import uuid

from services import errors
from services.errors import PermissionDenied, Unauthenticated
from services.gateway.config import GatewaySettings

CLIENT_CLOSED_REQUEST = 499  # nginx's status for "the client went away first"; never reaches a client

HTTP_STATUS: dict[type[errors.SpotterError], int] = {
    errors.InvalidInput: 400,
    errors.Unauthenticated: 401,
    errors.PermissionDenied: 403,
    errors.NotFound: 404,
    errors.NotAcceptable: 406,
    errors.Conflict: 409,
    errors.PayloadTooLarge: 413,
    errors.UnsupportedMediaType: 415,
    errors.InvalidParameter: 422,
    errors.UpstreamError: 502,
    errors.Overloaded: 503,
    errors.Unavailable: 503,
    errors.DeadlineExceeded: 504,
}


def http_status(exc: errors.SpotterError) -> int:
    """The HTTP status of one of our errors (the nearest class in its MRO that has one; 500 if none)."""
    for cls in type(exc).__mro__:
        status = HTTP_STATUS.get(cls)
        if status is not None:
            return status
    return 500


REQUEST_ID_HEADER = "X-Request-ID"
# A client's id is kept only if it is short and plain (it goes into logs and gRPC metadata).
_GOOD_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=@-]{1,128}$")


def request_id_from(given: str | None) -> str:
    """The client's request id (``X-Request-ID``, gRPC ``x-request-id``) when it is short and plain, else a new one."""
    if given and _GOOD_REQUEST_ID.match(given):
        return given
    return uuid.uuid4().hex


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
