"""The page to try a model: ``GET /ui`` (``GET /`` redirects to it) and its script and style sheet.

Plain files from ``services/gateway/static/``, no build step. The page calls the public REST API from the browser
(``GET /v1/models``, ``:detect``, ``:classify``) with URLs relative to itself, so it works behind a path prefix too;
its Content-Security-Policy lets it load nothing from anywhere but the gateway.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from services.errors import NotFound

router = APIRouter(tags=["ui"], include_in_schema=False)

STATIC = Path(__file__).resolve().parents[2] / "static"
# The only files served: a fixed list, so a path in the URL never reaches the file system.
_ASSETS = {"app.js": "text/javascript", "app.css": "text/css"}
# The image is a blob: URL of the user's own file; the script reaches the API on the same origin only.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",  # revalidated by ETag, so a new gateway's page is seen at once
}


@router.get("/")
async def root() -> RedirectResponse:
    """The gateway's root: the page to try a model."""
    return RedirectResponse("ui", status_code=307)  # relative, so a path prefix in front of the gateway is kept


@router.get("/ui")
async def page() -> FileResponse:
    """The page to try a model: pick one, drop an image, see what it finds."""
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=_HEADERS)


@router.get("/ui/{asset}")
async def asset(asset: str) -> FileResponse:
    """The page's script and style sheet."""
    media_type = _ASSETS.get(asset)
    if media_type is None:
        raise NotFound(f"no file /ui/{asset}; the page is at /ui")
    return FileResponse(STATIC / asset, media_type=media_type, headers=_HEADERS)
