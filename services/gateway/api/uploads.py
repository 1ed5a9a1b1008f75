"""Reading an uploaded image from a request: a raw body or a multipart ``image`` field, never past a size limit.

The limit is checked twice: against ``Content-Length`` before a byte is read, and while the body streams in, so a
client that lies about its length, or sends it chunked, still cannot make the gateway hold more than the limit.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import Message, Receive

from services.errors import InvalidInput, PayloadTooLarge

# Room for multipart boundaries and part headers around the image itself.
MULTIPART_OVERHEAD = 64 * 1024
IMAGE_FIELD = "image"

IMAGE_BODY_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The image: a raw JPEG, PNG or WebP body, or a multipart form with the file in field `image`.",
        "content": {
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/webp": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {IMAGE_FIELD: {"type": "string", "format": "binary"}},
                    "required": [IMAGE_FIELD],
                }
            },
        },
    }
}


def _too_large(limit: int, size: int | None = None) -> PayloadTooLarge:
    said = f"{size} bytes" if size is not None else "more"
    return PayloadTooLarge(f"the request body is {said}; the limit is {limit} bytes", details={"max_bytes": limit})


def _limited(receive: Receive, limit: int) -> Receive:
    received = 0

    async def receive_limited() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise _too_large(limit)
        return message

    return receive_limited


async def read_image(request: Request, max_bytes: int) -> tuple[bytes, str | None]:
    """The image bytes and their declared content type (``None`` if undeclared).

    Raises:
        PayloadTooLarge: the body is (or declares itself) larger than ``max_bytes`` (plus multipart framing).
        InvalidInput: a malformed ``Content-Length``, or a multipart body without an ``image`` file.
    """
    content_type = request.headers.get("content-type")
    multipart = (content_type or "").split(";", 1)[0].strip().lower() == "multipart/form-data"
    limit = max_bytes + (MULTIPART_OVERHEAD if multipart else 0)
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise InvalidInput(f"Content-Length {declared!r} is not a number") from None
        if length > limit:
            raise _too_large(limit, length)
    limited = Request(request.scope, _limited(request.receive, limit))
    if not multipart:
        return await limited.body(), content_type
    form = await limited.form(max_files=1, max_fields=16)
    try:
        upload = form.get(IMAGE_FIELD)
        if not isinstance(upload, UploadFile):
            raise InvalidInput(f"the multipart body has no file in field {IMAGE_FIELD!r}")
        return await upload.read(), upload.content_type
    finally:
        await form.close()
