"""``/docs`` documents the inference answers with the result types themselves (:mod:`services.vision.results`):
the routes write the results' own JSON, so only their ``response_model`` puts the schema in the OpenAPI document."""

from __future__ import annotations

from typing import Any

from services.gateway.app import create_app
from services.gateway.config import GatewaySettings


def answer_schema(openapi: dict[str, Any], path: str) -> dict[str, Any]:
    ref: str = openapi["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    schema: dict[str, Any] = openapi["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return schema


def fields(schema: dict[str, Any]) -> dict[str, str]:
    return {name: spec.get("type", spec.get("$ref", "")) for name, spec in schema["properties"].items()}


def test_the_detect_and_classify_answers_are_documented_field_by_field() -> None:
    openapi = create_app(GatewaySettings()).openapi()
    schemas = openapi["components"]["schemas"]
    detect = answer_schema(openapi, "/v1/models/{name}:detect")
    assert fields(detect) == {
        "model": "string",
        "version": "integer",
        "width": "integer",
        "height": "integer",
        "detections": "array",
    }
    assert detect["required"] == ["model", "version", "width", "height", "detections"]
    detection = schemas[detect["properties"]["detections"]["items"]["$ref"].rsplit("/", 1)[1]]
    assert fields(detection) == {
        "label": "string",
        "class_id": "integer",
        "score": "number",
        "box": "#/components/schemas/Box",
    }
    assert fields(schemas["Box"]) == dict.fromkeys(("xmin", "ymin", "xmax", "ymax"), "number")

    classify = answer_schema(openapi, "/v1/models/{name}:classify")
    assert fields(classify) == {"model": "string", "version": "integer", "predictions": "array"}
    prediction = schemas[classify["properties"]["predictions"]["items"]["$ref"].rsplit("/", 1)[1]]
    assert fields(prediction) == {"label": "string", "class_id": "integer", "score": "number"}
    assert prediction["required"] == ["label", "class_id", "score"]
