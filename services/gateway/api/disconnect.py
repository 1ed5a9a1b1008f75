"""Stop working for clients that are gone.

An HTTP request's handler is not cancelled when its client disconnects; inference is, here: the work runs beside a
watcher of the connection, and a disconnect cancels it, so its images leave the batch queue and free their places.
A client that leaves while its body is being read (Starlette's ``ClientDisconnect``) or while it waits for its answer
(:class:`ClientDisconnected`) is not an error of ours: it is counted as status ``499`` in the request metrics and
logged at INFO, without a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive

from services.gateway.calls import CLIENT_CLOSED_REQUEST

_T = TypeVar("_T")

logger = logging.getLogger(__name__)


class ClientDisconnected(Exception):
    """The client closed the connection before its answer was ready."""


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work: Awaitable[_T]) -> _T:
    """Await ``work`` (after the request body has been read); cancel it if the client disconnects first.

    Raises:
        ClientDisconnected: the client went away; ``work`` was cancelled.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request.receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        watcher.cancel()
        raise
    if task.done():
        watcher.cancel()
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    raise ClientDisconnected


async def client_disconnected_handler(request: Request, exc: Exception) -> Response:
    """Nobody will read this answer; it exists for the access log and the request metrics (status 499)."""
    when = "while it sent its request" if isinstance(exc, ClientDisconnect) else "before its answer was ready"
    logger.info("the client of %s %s went away %s", request.method, request.url.path, when)
    return Response(status_code=CLIENT_CLOSED_REQUEST)
