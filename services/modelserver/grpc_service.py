"""TFS's gRPC API on the official ``tensorflow_serving.apis`` stubs: ``PredictionService`` (Predict, Classify,
Regress, MultiInference, GetModelMetadata) and ``ModelService`` (GetModelStatus, HandleReloadConfigRequest).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn

import grpc
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from services.logs import request_id_var
from services.modelserver import inference
from services.modelserver.config import ConfigError, ConfiguredModels
from services.modelserver.metrics import METRICS
from services.modelserver.repository import ModelRepository, VersionStatus
from services.modelserver.servable import Servable
from services.modelserver.status import ServingError, failed_precondition, invalid_argument

log = logging.getLogger(__name__)

SIGNATURE_DEF = "signature_def"
REQUEST_ID_HEADER = "x-request-id"
RELOAD_TIMEOUT = 300.0  # a ReloadConfigRequest waits this long for the versions it asks for to load


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
        return self._call("Predict", request, context, self._predict)

    def Classify(self, request: classification_pb2.ClassificationRequest, context: grpc.ServicerContext) -> Any:
        return self._call("Classify", request, context, inference.classify)

    def Regress(self, request: regression_pb2.RegressionRequest, context: grpc.ServicerContext) -> Any:
        return self._call("Regress", request, context, inference.regress)

    def MultiInference(self, request: inference_pb2.MultiInferenceRequest, context: grpc.ServicerContext) -> Any:
        return self._call("MultiInference", request, context, inference.multi_inference, _first_task_spec)

    def GetModelMetadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, context: grpc.ServicerContext
    ) -> Any:
        with _request_scope(context):
            try:
                return model_metadata(self._repository, request)
            except ServingError as exc:
                log.info("GetModelMetadata failed: %s: %s", exc.code.name, exc.message)
                _abort(context, exc)

    @staticmethod
    def _predict(servable: Servable, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        response = predict_pb2.PredictResponse()
        servable.predict(request, response)
        return response

    def _call(
        self,
        api: str,
        request: Any,
        context: grpc.ServicerContext,
        run: Callable[[Servable, Any], Any],
        spec_of: Callable[[Any], model_pb2.ModelSpec] | None = None,
    ) -> Any:
        """Resolve the request's model spec, run ``run`` on that servable, count and time it as TFS does."""
        with _request_scope(context):
            start = time.perf_counter()
            name = ""
            try:
                spec = (spec_of or _model_spec)(request)
                name = spec.name
                servable = resolve(self._repository, spec)
                response = run(servable, request)
            except ServingError as exc:
                self._count(name, exc.code)
                log.info("%s failed: %s: %s", api, exc.code.name, exc.message)
                _abort(context, exc)
            except Exception:
                self._count(name, grpc.StatusCode.INTERNAL)
                log.exception("%s failed on model %s", api, name)
                _abort(context, ServingError(grpc.StatusCode.INTERNAL, f"{api} internal error"))
            label = self._label(name)
            elapsed_us = (time.perf_counter() - start) * 1e6
            METRICS.request_latency.observe(label, api, "GRPC", value=elapsed_us)
            METRICS.request_count.inc(label, grpc.StatusCode.OK.name)
            log.debug("%s %s version %d in %.0f µs", api, name, servable.version, elapsed_us)
            return response

    def _label(self, name: str) -> str:
        # A client can send any name: only models the server knows become label values, so series stay bounded.
        return name if self._repository.knows(name) else "unknown"

    def _count(self, name: str, code: grpc.StatusCode) -> None:
        METRICS.request_count.inc(self._label(name), code.name)


def _model_spec(request: Any) -> model_pb2.ModelSpec:
    if not request.HasField("model_spec"):
        raise invalid_argument("Missing ModelSpec")
    return request.model_spec


def _first_task_spec(request: inference_pb2.MultiInferenceRequest) -> model_pb2.ModelSpec:
    if not request.tasks:
        raise invalid_argument("Tasks field is empty.")
    return request.tasks[0].model_spec


def reload_config(
    configured: ConfiguredModels | None,
    repository: ModelRepository[Servable],
    config: model_server_config_pb2.ModelServerConfig,
    *,
    timeout: float = RELOAD_TIMEOUT,
) -> None:
    """TFS's ``ServerCore::ReloadConfig``: serve ``config``'s models, wait for their versions to load, then check
    that every label names an AVAILABLE version.

    Raises:
        ServingError: INVALID_ARGUMENT for a config this server can't take, FAILED_PRECONDITION for a label on a
            version that isn't available (the label keeps its previous version), DEADLINE_EXCEEDED if loads
            don't finish in ``timeout``.
    """
    if config.WhichOneof("config") != "model_config_list":
        raise invalid_argument(
            "ServerCore::HandleReloadConfigRequest only supports reloading model_config_list configs. "
            f"Got: {config.WhichOneof('config') or 'no config'}"
        )
    if configured is None:
        raise failed_precondition(
            "This server serves the folders of its model root; start it with --model-config-file to reload configs"
        )
    try:
        sources = configured.replace(config)
    except ConfigError as exc:
        raise invalid_argument(str(exc)) from exc
    repository.poll_once()
    names = [source.name for source in sources]
    if not repository.wait_settled(names, timeout):
        raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, f"Models still loading after {timeout:.0f}s")
    for source in sources:
        wanted, served = repository.labels(source.name)
        for label, version in sorted(wanted.items()):
            if served.get(label) != version:
                raise failed_precondition(
                    f"Request to assign label to version {version} of model {source.name}, which is not currently "
                    "available for inference"
                )


class ModelService(model_service_pb2_grpc.ModelServiceServicer):  # type: ignore[misc]
    """``tensorflow.serving.ModelService``: GetModelStatus and HandleReloadConfigRequest."""

    def __init__(self, repository: ModelRepository[Servable], configured: ConfiguredModels | None = None) -> None:
        self._repository = repository
        self._configured = configured

    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest, context: grpc.ServicerContext) -> Any:
        with _request_scope(context):
            try:
                return model_status(self._repository, request)
            except ServingError as exc:
                log.info("GetModelStatus failed: %s: %s", exc.code.name, exc.message)
                _abort(context, exc)

    def HandleReloadConfigRequest(
        self, request: model_management_pb2.ReloadConfigRequest, context: grpc.ServicerContext
    ) -> Any:
        with _request_scope(context):
            try:
                reload_config(self._configured, self._repository, request.config)
            except ServingError as exc:
                log.error("ServerCore::HandleReloadConfigRequest failed: %s", exc.message)
                # TFS puts the status in the response and answers the call with it.
                context.set_code(exc.code)
                context.set_details(exc.message)
                response = model_management_pb2.ReloadConfigResponse()
                response.status.error_code = exc.code.value[0]
                response.status.error_message = exc.message
                return response
            return model_management_pb2.ReloadConfigResponse()


def create_grpc_server(
    repository: ModelRepository[Servable],
    *,
    host: str,
    port: int,
    workers: int,
    max_message_bytes: int,
    configured: ConfiguredModels | None = None,
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
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(repository, configured), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"cannot listen for gRPC on {address}: {exc}") from exc
    if bound == 0:
        raise OSError(f"cannot listen for gRPC on {address}")
    return server
