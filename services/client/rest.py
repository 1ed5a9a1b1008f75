"""A small typed client for the gateway's REST API (httpx), shared by ``spotter detect`` and the tests.

Errors come back as the same :mod:`services.errors` classes the gateway raised (by the error body's ``code``), so
callers handle ``ModelNotFound`` or ``Overloaded`` (with its ``retry_after``) rather than status numbers.
Answers are the results every transport shares (:mod:`services.vision.results`): ``detect`` gives a
:class:`~services.vision.results.DetectResult`, ``classify`` a :class:`~services.vision.results.ClassifyResult`.

    with RestClient("http://127.0.0.1:8080") as client:
        result = client.detect(Path("street.jpg"), model="demo", min_score=0.5)
        for d in result.detections:
            print(d.label, d.score, d.box)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx

from services import errors
from services.vision.results import ClassifyResult, DetectResult

_Result = TypeVar("_Result", DetectResult, ClassifyResult)
_MEDIA_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}


@dataclass(frozen=True, slots=True)
class AnnotateResult:
    image: bytes
    media_type: str
    version: int | None


def media_type_of(path: Path) -> str:
    """The content type to send for an image file, from its extension (the gateway sniffs the bytes anyway)."""
    return _MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")


class RestClient:
    """Calls the gateway's REST API.

    Args:
        base_url: The gateway, e.g. ``http://127.0.0.1:8080``.
        api_key: Sent as ``X-API-Key`` when given.
        timeout: Seconds per request.
        transport: An httpx transport (tests pass an ASGI transport or a mock).
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8080",
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, transport=transport)

    def __enter__(self) -> RestClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def detect(
        self,
        image: bytes | Path,
        *,
        model: str = "demo",
        content_type: str | None = None,
        version: int | None = None,
        label: str | None = None,
        min_score: float | None = None,
        max_detections: int | None = None,
        tile: str | None = None,
    ) -> DetectResult:
        """Detect objects in an image (bytes, or a file path)."""
        params = _params(version=version, label=label, min_score=min_score, max_detections=max_detections, tile=tile)
        response = self._post(f"/v1/models/{model}:detect", image, content_type, params)
        return self._answer(DetectResult.from_json, response)

    def annotate(
        self,
        image: bytes | Path,
        *,
        model: str = "demo",
        accept: str = "image/jpeg",
        content_type: str | None = None,
        version: int | None = None,
        label: str | None = None,
        min_score: float | None = None,
        max_detections: int | None = None,
        tile: str | None = None,
    ) -> AnnotateResult:
        """The image with the detections drawn, as ``accept`` (image/jpeg or image/png)."""
        params = _params(version=version, label=label, min_score=min_score, max_detections=max_detections, tile=tile)
        response = self._post(f"/v1/models/{model}:annotate", image, content_type, params, accept=accept)
        version_header = response.headers.get("X-Spotter-Model-Version")
        return AnnotateResult(
            image=response.content,
            media_type=response.headers.get("content-type", "").split(";")[0],
            version=int(version_header) if version_header else None,
        )

    def classify(
        self,
        image: bytes | Path,
        *,
        model: str,
        content_type: str | None = None,
        version: int | None = None,
        label: str | None = None,
        top_k: int | None = None,
    ) -> ClassifyResult:
        """The top-k labels of an image."""
        params = _params(version=version, label=label, top_k=top_k)
        response = self._post(f"/v1/models/{model}:classify", image, content_type, params)
        return self._answer(ClassifyResult.from_json, response)

    def list_models(self) -> list[dict[str, Any]]:
        """``GET /v1/models``: every model with its versions."""
        models: list[dict[str, Any]] = self._send("GET", "/v1/models").json()["models"]
        return models

    def get_model(self, name: str) -> dict[str, Any]:
        """``GET /v1/models/{name}``."""
        model: dict[str, Any] = self._send("GET", f"/v1/models/{name}").json()
        return model

    def ready(self) -> bool:
        """Whether ``/readyz`` says the gateway can serve."""
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def _post(
        self,
        path: str,
        image: bytes | Path,
        content_type: str | None,
        params: dict[str, str],
        *,
        accept: str = "application/json",
    ) -> httpx.Response:
        if isinstance(image, Path):
            content_type = content_type or media_type_of(image)
            data = image.read_bytes()
        else:
            data = image
        headers = {"Content-Type": content_type or "application/octet-stream", "Accept": accept}
        return self._send("POST", path, content=data, params=params, headers=headers)

    def _answer(self, read: Callable[[bytes], _Result], response: httpx.Response) -> _Result:
        """A result read from a success's JSON; a body that is not one is the gateway's fault, not the caller's."""
        try:
            return read(response.content)
        except ValueError as err:
            raise errors.UpstreamError(
                f"the gateway at {self.base_url} answered {response.request.url.path} with something that is not"
                f" its answer: {err}"
            ) from err

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as err:
            raise errors.DeadlineExceeded(f"the gateway at {self.base_url} did not answer in time") from err
        except httpx.TransportError as err:
            raise errors.Unavailable(f"cannot reach the gateway at {self.base_url}: {err}") from err
        if response.is_success:
            return response
        raise error_from_response(response)


def error_from_response(response: httpx.Response) -> errors.SpotterError:
    """The :mod:`services.errors` exception an error answer stands for (``UpstreamError`` if it is not ours)."""
    try:
        body = response.json()["error"]
        code, message, details = str(body["code"]), str(body["message"]), body.get("details")
    except (ValueError, KeyError, TypeError):
        return errors.UpstreamError(f"HTTP {response.status_code} from the gateway: {response.text[:500]}")
    cls = errors.error_class(code) or errors.SpotterError
    if cls in (errors.Overloaded, errors.Unavailable):
        retry_after = float(response.headers.get("Retry-After", "1") or 1)
        return cls(message, retry_after=retry_after, details=details)
    error = cls(message, details=details)
    if cls is errors.SpotterError:
        error.code = code  # keep a code this client does not know (a newer gateway's)
    return error


def _params(**values: object) -> dict[str, str]:
    return {key: str(value) for key, value in values.items() if value is not None}
