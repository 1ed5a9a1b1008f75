"""TFS's gRPC API on the official ``tensorflow_serving.apis`` stubs: ``PredictionService.Predict`` and
``GetModelMetadata``, ``ModelService.GetModelStatus``. The other methods (Classify, Regress, MultiInference,
HandleReloadConfigRequest) answer UNIMPLEMENTED, from the generated base classes.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn

import grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from services.logs import request_id_var
from services.modelserver.metrics import METRICS
from services.modelserver.repository import ModelRepository, VersionStatus
from services.modelserver.servable import Servable
from services.modelserver.status import ServingError, invalid_argument

log = logging.getLogger(__name__)

SIGNATURE_DEF = "signature_def"
REQUEST_ID_HEADER = "x-request-id"


@contextlib.contextmanager
def _request_scope(context: grpc.ServicerContext) -> Iterator[None]:
    """Logs of this call carry the caller's ``x-request-id`` (the gateway sends one)."""
    request_id = next((v for k, v in context.invocation_metadata() if k == REQUEST_ID_HEADER), None)
    token = request_id_var.set(str(request_id) if request_id is not None else None)
    try:
        yield
    finally:
        request_id_var.reset(token)


def _abort(context: grpc.ServicerContext, error: ServingError) -> NoReturn:
    context.abort(error.code, error.message)
    raise AssertionError("unreachable: grpc aborts by raising")  # pragma: no cover


def resolve(repository: ModelRepository[Servable], spec: model_pb2.ModelSpec) -> Servable:
    """The servable a ``ModelSpec`` names (TFS's ``ServableRequestFromModelSpec``)."""
    if not spec.name:
        raise invalid_argument("ModelSpec has no name specified.")
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return repository.resolve(spec.name, version=spec.version.value)
    if choice == "version_label":
        return repository.resolve(spec.name, label=spec.version_label)
    return repository.resolve(spec.name)


def status_response(statuses: tuple[VersionStatus, ...]) -> get_model_status_pb2.GetModelStatusResponse:
    """``GetModelStatusResponse`` for the given versions (shared with the REST status endpoint)."""
    response = get_model_status_pb2.GetModelStatusResponse()
    for entry in statuses:
        item = response.model_version_status.add()
        item.version = entry.version
        item.state = int(entry.state)
        item.status.error_code = entry.error_code.value[0]
        item.status.error_message = entry.error_message
    return response


def model_status(
    repository: ModelRepository[Servable], request: get_model_status_pb2.GetModelStatusRequest
) -> get_model_status_pb2.GetModelStatusResponse:
    """TFS's GetModelStatus: every version of the model, or the version asked (a version label is ignored, as
    TFS ignores it)."""
    if not request.HasField("model_spec"):
        raise invalid_argument("Missing ModelSpec")
    spec = request.model_spec
    version = spec.version.value if spec.HasField("version") else None
    return status_response(repository.status(spec.name, version))


def model_metadata(
    repository: ModelRepository[Servable], request: get_model_metadata_pb2.GetModelMetadataRequest
) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """TFS's GetModelMetadata: only the ``signature_def`` field exists."""
    if not request.HasField("model_spec"):
        raise invalid_argument("Missing ModelSpec")
    if not request.metadata_field:
        raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
    for field in request.metadata_field:
        if field != SIGNATURE_DEF:
            raise invalid_argument(f"Metadata field {field} is not supported")
    return resolve(repository, request.model_spec).metadata


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):  # type: ignore[misc]
    """``tensorflow.serving.PredictionService``."""

    def __init__(self, repository: ModelRepository[Servable]) -> None:
        self._repository = repository

    def Predict(self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext) -> Any:
        with _request_scope(context):
            start = time.perf_counter()
            name = request.model_spec.name
            try:
                if not request.HasField("model_spec"):
                    raise invalid_argument("Missing ModelSpec")
                servable = resolve(self._repository, request.model_spec)
                response = predict_pb2.PredictResponse()
                servable.predict(request, response)
            except ServingError as exc:
                self._count(name, exc.code)
                log.info("Predict failed: %s: %s", exc.code.name, exc.message)
                _abort(context, exc)
            except Exception:
                self._count(name, grpc.StatusCode.INTERNAL)
                log.exception("Predict failed on model %s", name)
                _abort(context, ServingError(grpc.StatusCode.INTERNAL, "Predict internal error"))
            label = self._label(name)
            elapsed_us = (time.perf_counter() - start) * 1e6
            METRICS.request_latency.observe(label, "Predict", "GRPC", value=elapsed_us)
            METRICS.request_count.inc(label, grpc.StatusCode.OK.name)
            log.debug("Predict %s version %d in %.0f µs", name, servable.version, elapsed_us)
            return response

    def GetModelMetadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, context: grpc.ServicerContext
    ) -> Any:
        with _request_scope(context):
            try:
                return model_metadata(self._repository, request)
            except ServingError as exc:
                log.info("GetModelMetadata failed: %s: %s", exc.code.name, exc.message)
                _abort(context, exc)

    def Classify(self, request: Any, context: grpc.ServicerContext) -> Any:
        _unimplemented(context, "Classify")

    def Regress(self, request: Any, context: grpc.ServicerContext) -> Any:
        _unimplemented(context, "Regress")

    def MultiInference(self, request: Any, context: grpc.ServicerContext) -> Any:
        _unimplemented(context, "MultiInference")

    def _label(self, name: str) -> str:
        # A client can send any name: only models the server knows become label values, so series stay bounded.
        return name if self._repository.knows(name) else "unknown"

    def _count(self, name: str, code: grpc.StatusCode) -> None:
        METRICS.request_count.inc(self._label(name), code.name)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):  # type: ignore[misc]
    """``tensorflow.serving.ModelService`` (GetModelStatus; HandleReloadConfigRequest is not implemented)."""

    def __init__(self, repository: ModelRepository[Servable]) -> None:
        self._repository = repository

    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest, context: grpc.ServicerContext) -> Any:
        with _request_scope(context):
            try:
                return model_status(self._repository, request)
            except ServingError as exc:
                log.info("GetModelStatus failed: %s: %s", exc.code.name, exc.message)
                _abort(context, exc)

    def HandleReloadConfigRequest(self, request: Any, context: grpc.ServicerContext) -> Any:
        _unimplemented(context, "HandleReloadConfigRequest")


def _unimplemented(context: grpc.ServicerContext, method: str) -> NoReturn:
    _abort(context, ServingError(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented by this server"))


def create_grpc_server(
    repository: ModelRepository[Servable], *, host: str, port: int, workers: int, max_message_bytes: int
) -> grpc.Server:
    """A gRPC server (not started yet) with both services bound to ``host:port``."""
    server = grpc.server(
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            # A port another process holds is an error, not a silently shared port.
            ("grpc.so_reuseport", 0),
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(repository), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(repository), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"cannot listen for gRPC on {address}: {exc}") from exc
    if bound == 0:
        raise OSError(f"cannot listen for gRPC on {address}")
    return server
