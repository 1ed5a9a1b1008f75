"""The REST API's query parameters and JSON bodies (pydantic models: they are the OpenAPI schema too).

The answers of ``:detect`` and ``:classify`` are not here: they are :mod:`services.vision.results`, the one type of
each answer that every transport and client shares.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.gateway.catalog import ModelDescription
from services.gateway.dataplane import MAX_DETECTIONS_LIMIT


class SelectorQuery(BaseModel):
    """Which version of the model to use: a number, a label (TFS ``version_labels``), or neither for the latest."""

    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(None, ge=1, description="a version number; not with `label`")
    label: str | None = Field(None, min_length=1, max_length=128, description="a version label; not with `version`")


class DetectQuery(SelectorQuery):
    min_score: float | None = Field(None, ge=0.0, le=1.0, description="drop detections scoring below this")
    max_detections: int | None = Field(None, ge=1, le=MAX_DETECTIONS_LIMIT, description="answer at most this many")
    tile: Literal["auto", "on", "off"] = Field(
        "auto", description="cut large images into model-sized tiles (auto: when the image is much larger)"
    )


class ClassifyQuery(SelectorQuery):
    top_k: int | None = Field(None, ge=1, le=1000, description="answer the k most likely labels")


class LabelBody(BaseModel):
    id: int
    name: str


class VersionBody(BaseModel):
    version: int
    state: str = Field(description="TFS's state: START, LOADING, AVAILABLE, UNLOADING, END")
    kind: Literal["detector", "classifier", "unknown"] | None = None
    input_size: int | None = Field(None, description="the side S of the model's square input")
    labels: list[LabelBody] | None = None
    views: Literal["whole", "tiles"] | None = Field(
        None, description="how the version sees an image: the whole image letterboxed, or native-scale S x S tiles"
    )
    crop_size: int | None = Field(None, description="tiles: the side of the crops it was trained on")
    object_size_px: list[float] | None = Field(None, description="tiles: [smallest, largest] object side trained on")


class ModelBody(BaseModel):
    name: str
    versions: list[VersionBody]
    version_labels: dict[str, int]

    @classmethod
    def of(cls, model: ModelDescription) -> ModelBody:
        return cls(
            name=model.name,
            versions=[
                VersionBody(
                    version=v.version,
                    state=v.state,
                    kind=v.kind,
                    input_size=v.input_size,
                    labels=None if v.labels is None else [LabelBody(id=i, name=n) for i, n in sorted(v.labels.items())],
                    views=v.views.views if v.views else None,
                    crop_size=v.views.crop_size if v.views else None,
                    object_size_px=list(v.views.object_size_px) if v.views and v.views.object_size_px else None,
                )
                for v in model.versions
            ],
            version_labels=model.version_labels,
        )


class ModelListResponse(BaseModel):
    models: list[ModelBody]


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: object | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


def error_responses(texts: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses=`` for OpenAPI: each status with the error body and what causes it."""
    return {status: {"model": ErrorResponse, "description": text} for status, text in texts.items()}


class ReadinessResponse(BaseModel):
    ready: bool
    reason: str
    model_server_up: bool
    models: dict[str, bool] = Field(description="model -> whether it has an AVAILABLE version")
