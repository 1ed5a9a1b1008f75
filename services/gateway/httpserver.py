"""The gateway's HTTP server: uvicorn configured from :class:`GatewaySettings`, with a protocol that bounds headers.

uvicorn bounds the idle time of a kept-alive connection (``timeout_keep_alive``) but not the time or the bytes a client
may take to send a request's line and headers: with httptools (uvicorn's default parser when it is installed) a
connection that sends ``GET / HTTP/1.1\\r\\nHost: x\\r\\n`` and then nothing is held forever, and the header bytes are
buffered without a limit (``h11_max_incomplete_event_size`` applies to the h11 parser only). So the gateway runs
httptools through :class:`GatewayHttpProtocol`, a small subclass that

- gives the request line and headers ``http_header_timeout_seconds`` from the connection's start (or from the first
  byte of each following request): then ``408`` if part of a request came, else the connection is just closed;
- refuses headers over ``http_max_header_bytes`` with ``431``;
- counts every such refusal in ``spotter_protocol_refusals_total`` (by status and code);
- answers a request the parser refuses (a bad method, a bad header, conflicting lengths, TLS sent to the plain port)
  with the JSON error body naming the parser's reason, where uvicorn answers ``text/plain``, and logs it at INFO
  (uvicorn logs a WARNING per refused request, which any client can repeat).

Bodies are bounded in the app (:class:`services.gateway.api.middleware.BodyReadTimeout`), where a 408 can go
through the error handlers like every other answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any, cast

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from services.gateway import metrics
from services.gateway.api.errors import error_body
from services.gateway.config import GatewaySettings

logger = logging.getLogger(__name__)


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size limit for request headers, and JSON refusals.

    The limits are class attributes: :func:`protocol_class` makes a subclass with the configured values (uvicorn
    builds one protocol object per connection from the class it is given).
    """

    header_timeout: float = 10.0
    max_header_bytes: int = 64 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._in_headers = True  # the next bytes are a request line or headers (not a body)
        self._header_bytes = 0  # bytes received since the last request's headers were complete

    # Connection events.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn's data_received, but a refused request is logged at INFO with the parser's reason (uvicorn logs a
        # WARNING without one for each, which lets any client fill the log) and answered with the JSON body.
        if self._in_headers:
            self._header_bytes += len(data)
        self._unset_keepalive_if_required()
        try:
            # No WebSocket routes (ws="none"): a request with an Upgrade header is served as plain HTTP, like uvicorn.
            with contextlib.suppress(httptools.HttpParserUpgrade):
                self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            reason = str(exc).strip() or type(exc).__name__
            logger.info("refusing a malformed request from %s: %s", _client_text(self.client), reason)
            self._refuse(400, "invalid_input", f"the request is not valid HTTP/1.1 ({reason})")
            return
        # Checked after parsing: a chunk that completes the headers may carry the start of a body.
        if self._in_headers and self._header_bytes > self.max_header_bytes and not self.transport.is_closing():
            logger.info("refusing %s: request headers over %d bytes", _client_text(self.client), self.max_header_bytes)
            self._refuse(
                431,
                "request_header_fields_too_large",
                f"the request line and headers are over {self.max_header_bytes} bytes",
            )

    # Parser callbacks.
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._header_bytes = 0
        self._cancel_header_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_headers = True  # what follows on this connection is the next request

    # Our part.
    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined request is stuck behind one being answered: finish that answer, then close.
            self.cycle.keep_alive = False
            return
        if self._header_bytes == 0:
            self.transport.close()  # nothing was asked: nothing to answer
            return
        logger.info(
            "closing a connection from %s: its request headers did not arrive within %.1f s",
            _client_text(self.client),
            self.header_timeout,
        )
        self._refuse(
            408, "request_timeout", f"the request line and headers did not arrive within {self.header_timeout:g} s"
        )

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer ``status`` with the JSON error body, outside any ASGI cycle, and close the connection.

        Counted in ``spotter_protocol_refusals_total``: these answers never reach the app, so the request metrics
        don't see them.
        """
        self._cancel_header_timer()
        metrics.PROTOCOL_REFUSALS.labels(str(status), code).inc()
        body = json.dumps(error_body(code, message)).encode()
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()


def _client_text(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "a client"


def protocol_class(settings: GatewaySettings) -> type[GatewayHttpProtocol]:
    """:class:`GatewayHttpProtocol` with the header limits of ``settings``."""
    attributes = {
        "header_timeout": settings.http_header_timeout_seconds,
        "max_header_bytes": settings.http_max_header_bytes,
    }
    return cast("type[GatewayHttpProtocol]", type("GatewayHttpProtocol", (GatewayHttpProtocol,), attributes))


def server_config(app: Any, settings: GatewaySettings, **overrides: Any) -> uvicorn.Config:
    """The uvicorn configuration of the gateway (``spotter gateway`` and the tests' gateways use this one).

    ``overrides`` are uvicorn options that win over the settings (``host``, ``port``, ``timeout_graceful_shutdown``).
    """
    options: dict[str, Any] = {
        "host": settings.http_host,
        "port": settings.http_port,
        "http": protocol_class(settings),
        "ws": "none",  # no WebSocket routes: an Upgrade header is ignored, not served by a second protocol
        "timeout_keep_alive": settings.http_keep_alive_seconds,
        "log_config": None,  # Spotter configures logging once (services.logs)
        "lifespan": "on",
        "timeout_graceful_shutdown": 10,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)
