"""Model routes: inference (``:detect``, ``:annotate``, ``:classify``) and model information.

Each route reads the request, calls the dataplane and shapes the answer; the work and the rules live in
:mod:`services.gateway.dataplane`. An inference route takes its admission ticket before it reads the body, so an
overloaded gateway answers 503 having read nothing (:mod:`services.gateway.admission`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.routing import APIRoute

from services.errors import NotFound
from services.gateway.api.deps import DataplaneDep, InferenceKeyDep, SettingsDep
from services.gateway.api.disconnect import unless_disconnected
from services.gateway.api.schemas import (
    ClassifyQuery,
    DetectQuery,
    ErrorResponse,
    ModelBody,
    ModelListResponse,
    error_responses,
)
from services.gateway.api.uploads import IMAGE_BODY_OPENAPI, read_image
from services.gateway.dataplane import ClassifyRequest, DetectRequest
from services.vision.draw import negotiate_media_type
from services.vision.results import ClassifyResult, DetectResult

router = APIRouter(prefix="/v1", tags=["models"])

_ERRORS = error_responses(
    {
        400: "empty, not an image, or a corrupt image",
        404: "unknown model or version",
        413: "over the byte or pixel limit",
        415: "not JPEG, PNG or WebP",
        422: "a parameter out of range, or the wrong endpoint for the model's kind",
        503: "queue full or model server unavailable (see Retry-After)",
        504: "the model server did not answer in time",
    }
)


def _detect_request(name: str, data: bytes, content_type: str | None, query: DetectQuery) -> DetectRequest:
    return DetectRequest(
        model=name,
        data=data,
        content_type=content_type,
        version=query.version,
        label=query.label,
        min_score=query.min_score,
        max_detections=query.max_detections,
        tile=query.tile,
    )


def _json(body: bytes) -> Response:
    """A result's JSON, written by the result itself: the route's ``response_model`` only documents it (FastAPI
    would validate the result again before writing it, per request)."""
    return Response(body, media_type="application/json")


@router.post("/models/{name}:detect", openapi_extra=IMAGE_BODY_OPENAPI, responses=_ERRORS, response_model=DetectResult)
async def detect(
    name: str,
    query: Annotated[DetectQuery, Query()],
    request: Request,
    dataplane: DataplaneDep,
    settings: SettingsDep,
    _: InferenceKeyDep,
) -> Response:
    """Detect objects in an image; boxes in pixels of the original image."""
    request.state.spotter_model = name
    with dataplane.admit():
        data, content_type = await read_image(request, settings.max_image_bytes)
        detect_request = _detect_request(name, data, content_type, query)
        result = await unless_disconnected(request, dataplane.detect(detect_request))
    request.state.spotter_version = result.version
    return _json(result.to_json())


@router.post(
    "/models/{name}:annotate",
    openapi_extra=IMAGE_BODY_OPENAPI,
    responses={**_ERRORS, 200: {"content": {"image/jpeg": {}, "image/png": {}}, "description": "the drawn image"}},
    response_class=Response,
)
async def annotate(
    name: str,
    query: Annotated[DetectQuery, Query()],
    request: Request,
    dataplane: DataplaneDep,
    settings: SettingsDep,
    _: InferenceKeyDep,
) -> Response:
    """Detect objects and answer the image with their boxes and labels drawn (JPEG or PNG, by Accept)."""
    request.state.spotter_model = name
    media_type = negotiate_media_type(request.headers.get("accept"), default="image/jpeg")
    with dataplane.admit():
        data, content_type = await read_image(request, settings.max_image_bytes)
        annotated = await unless_disconnected(
            request, dataplane.annotate(_detect_request(name, data, content_type, query), media_type)
        )
    request.state.spotter_version = annotated.result.version
    return Response(
        annotated.image,
        media_type=annotated.media_type,
        headers={"X-Spotter-Model-Version": str(annotated.result.version), "Vary": "Accept"},
    )


@router.post(
    "/models/{name}:classify", openapi_extra=IMAGE_BODY_OPENAPI, responses=_ERRORS, response_model=ClassifyResult
)
async def classify(
    name: str,
    query: Annotated[ClassifyQuery, Query()],
    request: Request,
    dataplane: DataplaneDep,
    settings: SettingsDep,
    _: InferenceKeyDep,
) -> Response:
    """Classify an image: the top-k labels and their scores."""
    request.state.spotter_model = name
    with dataplane.admit():
        data, content_type = await read_image(request, settings.max_image_bytes)
        classify_request = ClassifyRequest(
            model=name,
            data=data,
            content_type=content_type,
            version=query.version,
            label=query.label,
            top_k=query.top_k,
        )
        result = await unless_disconnected(request, dataplane.classify(classify_request))
    request.state.spotter_version = result.version
    return _json(result.to_json())


@router.get("/models")
async def list_models(dataplane: DataplaneDep, _: InferenceKeyDep) -> ModelListResponse:
    """List the models with their versions, states, kinds, input sizes and labels."""
    return ModelListResponse(models=[ModelBody.of(m) for m in await dataplane.list_models()])


@router.get("/models/{name}", responses={404: {"model": ErrorResponse, "description": "unknown model"}})
async def get_model(name: str, request: Request, dataplane: DataplaneDep, _: InferenceKeyDep) -> ModelBody:
    """Describe one model: its versions, states, kind, input size, labels and version labels."""
    request.state.spotter_model = name
    return ModelBody.of(await dataplane.get_model(name))


# The verbs above (``detect``, ``annotate``, ``classify``), read from the routes so the list cannot drift.
MODEL_VERBS = tuple(
    route.path.rsplit(":", 1)[1]
    for route in router.routes
    if isinstance(route, APIRoute) and route.path.startswith("/v1/models/{name}:")
)


@router.post("/models/{name}:{verb}", include_in_schema=False)
async def unknown_verb(name: str, verb: str) -> None:
    """Any other verb (``:DETECT``, ``:predict``): 404 naming the verbs (not the 405 of ``/models/{name}``)."""
    listed = ", ".join(f":{v}" for v in MODEL_VERBS)
    hint = f"; did you mean :{verb.lower()}? verbs are lower case" if verb.lower() in MODEL_VERBS else ""
    raise NotFound(
        f"no verb :{verb} on /v1/models/{name}; the verbs are {listed}{hint}", details={"verbs": list(MODEL_VERBS)}
    )
