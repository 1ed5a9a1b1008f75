"""TFS's REST API (``http_rest_api_handler.cc``), on Starlette:

- ``GET /v1/models/{name}[/versions/{v}|/labels/{l}]``: the model's status;
- the same path with ``/metadata``: its signature defs;
- ``POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict``: Predict in TFS's JSON format;
- the same with ``:classify`` / ``:regress``: Classify and Regress on ``tf.Example`` JSON;
- ``GET /monitoring/prometheus/metrics``: the metrics.

Paths are matched with TFS's own (case-insensitive) patterns on the raw path, model names and labels
percent-decoded; errors are ``{"error": "<message>"}`` with TFS's HTTP status for the canonical code.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any
from urllib.parse import unquote

import grpc
from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    regression_pb2,
)

from services.logs import request_id_var
from services.modelserver import inference, rest_examples, rest_json
from services.modelserver.grpc_service import SIGNATURE_DEF, model_metadata, model_status, resolve
from services.modelserver.metrics import METRICS
from services.modelserver.repository import ModelRepository
from services.modelserver.servable import DEFAULT_SIGNATURE, Servable
from services.modelserver.status import ServingError, invalid_argument

log = logging.getLogger(__name__)

METRICS_PATH = "/monitoring/prometheus/metrics"
_PREDICT = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)", re.IGNORECASE
)
_STATUS = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?", re.IGNORECASE
)
_V1 = re.compile(r"/v1/.*", re.IGNORECASE | re.DOTALL)
_INT64_MAX = 2**63 - 1


def _model_spec(name: str, version: str | None, label: str | None) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=unquote(name))
    if version is not None:
        if int(version) > _INT64_MAX:
            raise invalid_argument(f"Failed to convert version: {version} to numeric.")
        spec.version.value = int(version)
    if label is not None:
        spec.version_label = unquote(label)
    return spec


def _status_json(spec: model_pb2.ModelSpec, repository: ModelRepository[Servable]) -> str:
    if not spec.name:
        raise invalid_argument("Missing model name in request.")
    response = model_status(repository, get_model_status_pb2.GetModelStatusRequest(model_spec=spec))
    return json_format.MessageToJson(response, indent=1, always_print_fields_with_no_presence=True)


def _metadata_json(spec: model_pb2.ModelSpec, repository: ModelRepository[Servable]) -> str:
    if not spec.name:
        raise invalid_argument("Missing model name in request.")
    request = get_model_metadata_pb2.GetModelMetadataRequest(model_spec=spec, metadata_field=[SIGNATURE_DEF])
    response = model_metadata(repository, request)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata[SIGNATURE_DEF].Unpack(signature_map)
    options: dict[str, Any] = {"preserving_proto_field_name": True, "always_print_fields_with_no_presence": True}
    body = {
        "model_spec": json_format.MessageToDict(response.model_spec, **options),
        "metadata": {SIGNATURE_DEF: json_format.MessageToDict(signature_map, **options)},
    }
    return json.dumps(body, indent=1)


def _predict_json(spec: model_pb2.ModelSpec, body: bytes, repository: ModelRepository[Servable]) -> str:
    document = rest_json.parse_document(body)
    name = rest_json.signature_name(document)
    servable = resolve(repository, spec)
    signature = servable.signatures.get(name or DEFAULT_SIGNATURE)
    if signature is None:
        raise invalid_argument(f'Serving signature name: "{name or DEFAULT_SIGNATURE}" not found in signature def')
    if not signature.inputs:
        # TFS's REST API needs at least one input; a no-input signature (``labels``) is for gRPC.
        raise invalid_argument(f"Failed to get input map for signature: {name or 'DEFAULT'}")
    fmt, inputs = rest_json.inputs_from_json(document, signature.inputs)
    return rest_json.outputs_to_json(servable.run(signature, inputs), fmt)


def _classify_json(spec: model_pb2.ModelSpec, body: bytes, repository: ModelRepository[Servable]) -> str:
    request = classification_pb2.ClassificationRequest(model_spec=spec)
    request.model_spec.signature_name = rest_examples.input_from_json(body, request.input)
    response = inference.classify(resolve(repository, request.model_spec), request)
    return rest_examples.classification_json(response.result)


def _regress_json(spec: model_pb2.ModelSpec, body: bytes, repository: ModelRepository[Servable]) -> str:
    request = regression_pb2.RegressionRequest(model_spec=spec)
    request.model_spec.signature_name = rest_examples.input_from_json(body, request.input)
    response = inference.regress(resolve(repository, request.model_spec), request)
    return rest_examples.regression_json(response.result)


_VERBS = {"predict": _predict_json, "classify": _classify_json, "regress": _regress_json}


def _error(error: ServingError) -> Response:
    return JSONResponse({"error": error.message}, status_code=error.http_status)


def create_app(repository: ModelRepository[Servable]) -> Starlette:
    """The REST app over ``repository``."""

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(METRICS.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def v1(request: Request) -> Response:
        raw = request.scope.get("raw_path") or request.scope["path"].encode()
        path = raw.decode("latin-1").split("?", 1)[0]
        token = request_id_var.set(request.headers.get("x-request-id"))
        try:
            if not _V1.fullmatch(path):
                return PlainTextResponse("Not Found", status_code=404)
            if request.method == "POST" and (match := _PREDICT.fullmatch(path)):
                name, version, label, method = match.groups()
                spec = _model_spec(name, version, label)
                body = await request.body()
                text = await run_in_threadpool(_VERBS[method.lower()], spec, body, repository)
            elif request.method == "GET" and (match := _STATUS.fullmatch(path)):
                name, version, label, subresource = match.groups()
                spec = _model_spec(name or "", version, label)
                handler = _metadata_json if subresource else _status_json
                text = await run_in_threadpool(handler, spec, repository)
            else:
                raise invalid_argument(f"Malformed request: {request.method} {path}")
        except ServingError as exc:
            log.info("REST %s %s failed: %s: %s", request.method, path, exc.code.name, exc.message)
            return _error(exc)
        except Exception:
            log.exception("REST %s %s failed", request.method, path)
            return _error(ServingError(grpc.StatusCode.INTERNAL, "internal error"))
        finally:
            request_id_var.reset(token)
        return Response(text, media_type="application/json")

    return Starlette(
        routes=[
            Route(METRICS_PATH, metrics, methods=["GET"]),
            Route("/{path:path}", v1, methods=["GET", "POST"]),
        ]
    )
