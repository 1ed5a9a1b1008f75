"""The shapes the dataset routes answer with, so ``/docs`` shows them. Built from a manifest's summary (see
:meth:`services.store.datasets.manifest.Manifest.summary`) and sent with ``response_model_exclude_unset``, so the
JSON is the summary exactly."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow")  # a newer manifest's extra keys pass through unchanged


class SplitTotals(_Answer):
    images: int
    boxes: int


class DatasetSummary(_Answer):
    """A dataset version as listings show it."""

    name: str
    version: int
    kind: str = Field(description="detection, classification or pool")
    created: str = Field(description="ISO 8601, UTC")
    format: str = Field(description="how its images were labelled (voc, coco, yolo, folders...)")
    classes: int = Field(description="how many classes")
    totals: dict[str, SplitTotals] = Field(description="per split")
    problems: dict[str, Any] = Field(description="problem counts of its import, by kind")


class DatasetListing(DatasetSummary):
    versions: list[int]


class DatasetList(BaseModel):
    datasets: list[DatasetListing]


class DatasetVersion(DatasetSummary):
    table: list[dict[str, Any]] = Field(description="per class: id, name, and {images, boxes} per split")
    split: dict[str, Any] = Field(description="how it was split: ratios, seed, rule")
    source: dict[str, Any] = Field(description="where it came from: format, archive, label map...")


class DatasetDetail(BaseModel):
    name: str
    latest: int
    versions: list[DatasetVersion]
