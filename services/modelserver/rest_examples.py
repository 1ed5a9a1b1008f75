"""TFS's JSON for ``:classify`` and ``:regress`` (``json_tensor.cc``): ``tf.Example`` objects in, ``results`` out.

A request is ``{"signature_name": ..., "context": {...}, "examples": [{...}, ...]}``; each feature is a value or a
list of values: JSON strings and ``{"b64": ...}`` become a ``bytes_list``, decimals a ``float_list``, whole numbers
and booleans an ``int64_list``, and one feature can't mix them. With a ``context`` the examples go to
``example_list_with_context``. Answers: ``{"results": [[[label, score], ...], ...]}`` for classify,
``{"results": [value, ...]}`` for regress.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import numpy as np
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow_serving.apis import classification_pb2, input_pb2, regression_pb2

from services.modelserver.rest_json import is_b64, json_type, parse_document, quote, signature_name
from services.modelserver.status import invalid_argument

_KIND_NAMES = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64", None: "UNKNOWN"}
_INT64 = (-(2**63), 2**63 - 1)


def _kind_error(name: str, feature: feature_pb2.Feature) -> Exception:
    kind = _KIND_NAMES[feature.WhichOneof("kind")]
    return invalid_argument(f"Unexpected element type in feature: {name} expecting type: {kind}")


def _add_value(value: Any, name: str, feature: feature_pb2.Feature) -> None:
    """One JSON value into ``feature`` (TFS's ``AddValueToFeature``)."""
    kind = feature.WhichOneof("kind")
    if isinstance(value, bool) or (isinstance(value, int) and not isinstance(value, bool)):
        if kind not in (None, "int64_list"):
            raise _kind_error(name, feature)
        number = int(value)
        if number > _INT64[1]:
            raise invalid_argument(f"Feature: {name} has uint64 element. Only int64 is supported.")
        if number < _INT64[0]:
            raise invalid_argument(f"Feature: {name} has element with unexpected JSON type: Number")
        feature.int64_list.value.append(number)
    elif isinstance(value, float):
        if kind not in (None, "float_list"):
            raise _kind_error(name, feature)
        if np.isfinite(value) and abs(value) > np.finfo(np.float32).max:
            raise invalid_argument(f"Cannot convert JSON value: {value} to float without loss of precision.")
        feature.float_list.value.append(value)
    elif isinstance(value, str):
        if kind not in (None, "bytes_list"):
            raise _kind_error(name, feature)
        feature.bytes_list.value.append(value.encode("utf-8"))
    elif is_b64(value):
        if kind not in (None, "bytes_list"):
            raise _kind_error(name, feature)
        try:
            feature.bytes_list.value.append(base64.b64decode(value["b64"], validate=True))
        except (binascii.Error, ValueError) as exc:
            raise invalid_argument("Unable to base64 decode") from exc
    else:
        raise invalid_argument(f"Feature: {name} has element with unexpected JSON type: {json_type(value)}")


def example_from_json(value: Any, example: example_pb2.Example) -> None:
    """A JSON object of features as a ``tf.Example`` (TFS's ``MakeExampleFromJsonObject``)."""
    if not isinstance(value, dict):
        raise invalid_argument(f"Example must be JSON object but got JSON {json_type(value)}")
    for name, content in value.items():
        feature = feature_pb2.Feature()
        for item in content if isinstance(content, list) else [content]:
            _add_value(item, name, feature)
        example.features.feature[name].CopyFrom(feature)


def input_from_json(body: bytes, request_input: input_pb2.Input) -> str:
    """Fill ``request_input`` from a classify/regress request body; returns its ``signature_name``."""
    document = parse_document(body)
    name = signature_name(document)
    has_context = "context" in document
    if has_context:
        example_from_json(document["context"], request_input.example_list_with_context.context)
    examples = document.get("examples")
    if examples is None:
        # TFS says "classify" for both verbs.
        raise invalid_argument(
            f"JSON Value: {quote(document)} When method is classify, key 'examples' is expected and was not found"
        )
    if not isinstance(examples, list):
        raise invalid_argument(f"JSON Value: {quote(document)} Expecting 'examples' value to be an list/array")
    if not examples:
        raise invalid_argument(f"JSON Value: {quote(document)} 'examples' value is an empty array")
    target = request_input.example_list_with_context.examples if has_context else request_input.example_list.examples
    for value in examples:
        example_from_json(value, target.add())
    return name


def _decimal(value: float) -> float:
    # The shortest decimal that reads back as the same float32, as TFS's WriteDecimal writes it.
    return float(str(np.float32(value)))


def classification_json(result: classification_pb2.ClassificationResult) -> str:
    """``{"results": [[[label, score], ...], ...]}`` (``MakeJsonFromClassificationResult``)."""
    if not result.classifications:
        raise invalid_argument("Cannot convert empty ClassificationResults to JSON")
    results = [[[c.label, _decimal(c.score)] for c in item.classes] for item in result.classifications]
    return json.dumps({"results": results})


def regression_json(result: regression_pb2.RegressionResult) -> str:
    """``{"results": [value, ...]}`` (``MakeJsonFromRegressionResult``)."""
    if not result.regressions:
        raise invalid_argument("Cannot convert empty RegressionResults to JSON")
    return json.dumps({"results": [_decimal(r.value) for r in result.regressions]})
