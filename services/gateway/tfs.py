"""The gateway's TensorFlow Serving client: one ``grpc.aio`` channel, only TFS APIs, our stubs.

Only ``Predict``, ``GetModelMetadata``, ``GetModelStatus`` and (to move version labels after a promotion)
``HandleReloadConfigRequest`` are used, so the same code talks to real TFS and to the embedded model server. Every
call has a deadline and carries the request id in ``x-request-id`` metadata. gRPC errors become
:mod:`services.errors` classes here, where they enter, with the original as ``__cause__``. The read-only calls
(metadata, status) are retried on UNAVAILABLE by gRPC itself, configured through the channel's service config;
Predict and reloads are never retried (a retry would double the load on an overloaded server).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
from google.protobuf import wrappers_pb2

from services import errors
from services.gateway import metrics
from services.gateway.tensors import encode_predict_request, to_ndarray
from services.gen.tfs import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    meta_graph_pb2,
    model_management_pb2,
    model_pb2,
    model_server_config_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from services.logs import request_id_var

logger = logging.getLogger(__name__)

SERVING_DEFAULT = "serving_default"

_SERVICE_CONFIG = {
    "methodConfig": [
        {
            "name": [
                {"service": "tensorflow.serving.PredictionService", "method": "GetModelMetadata"},
                {"service": "tensorflow.serving.ModelService", "method": "GetModelStatus"},
            ],
            "retryPolicy": {
                "maxAttempts": 3,
                "initialBackoff": "0.1s",
                "maxBackoff": "1s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ]
}


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    """What GetModelMetadata says about one version: its number and its signatures."""

    version: int
    signatures: Mapping[str, meta_graph_pb2.SignatureDef]


class TfsClient:
    """Async client for the model server's gRPC API.

    Args:
        target: ``host:port`` of the model server.
        deadline: seconds every call may take.
        max_message_bytes: gRPC send/receive limit (a batch of 16 640x640 images is ~20 MB).
        retry_after: the ``retry_after`` put on Unavailable/Overloaded errors.
    """

    def __init__(self, target: str, *, deadline: float, max_message_bytes: int, retry_after: float = 1.0) -> None:
        self.target = target
        self.deadline = deadline
        self._retry_after = retry_after
        self._channel = grpc.aio.insecure_channel(
            target,
            options=[
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.keepalive_time_ms", 60_000),
                ("grpc.keepalive_timeout_ms", 20_000),
                ("grpc.http2.max_pings_without_data", 0),
                ("grpc.keepalive_permit_without_calls", 0),
                ("grpc.enable_retries", 1),
                ("grpc.service_config", json.dumps(_SERVICE_CONFIG)),
                # Reconnect quickly once a restarted model server is back (the default backoff grows to 2 min).
                ("grpc.max_reconnect_backoff_ms", 2_000),
            ],
        )
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)  # type: ignore[no-untyped-call]
        # Predict with requests already serialized by encode_predict_request (the pixels copied once, not four times).
        self._predict_encoded: grpc.aio.UnaryUnaryMultiCallable[bytes, predict_pb2.PredictResponse]
        self._predict_encoded = self._channel.unary_unary(
            "/tensorflow.serving.PredictionService/Predict",
            request_serializer=None,
            response_deserializer=predict_pb2.PredictResponse.FromString,
        )

    async def close(self) -> None:
        await self._channel.close()

    async def predict(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        *,
        version: int | None = None,
        label: str | None = None,
        signature: str = SERVING_DEFAULT,
        output_filter: Sequence[str] = (),
        request_id: str | None = None,
    ) -> dict[str, np.ndarray]:
        """Run ``signature`` of a model on ``inputs``; the outputs as NumPy arrays."""
        request = predict_pb2.PredictRequest(
            model_spec=_model_spec(model, version, label, signature), output_filter=list(output_filter)
        )
        payload = encode_predict_request(request, inputs)
        what = f"Predict({_describe(model, version, label)}, {signature})"
        response = await self._call("Predict", self._predict_encoded, payload, model, version, label, what, request_id)
        return {name: to_ndarray(tensor) for name, tensor in response.outputs.items()}

    async def model_metadata(
        self, model: str, *, version: int | None = None, label: str | None = None
    ) -> ModelMetadata:
        """The signatures of one version (the latest if neither ``version`` nor ``label`` is given)."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=_model_spec(model, version, label, ""), metadata_field=["signature_def"]
        )
        what = f"GetModelMetadata({_describe(model, version, label)})"
        response = await self._call(
            "GetModelMetadata", self._predict.GetModelMetadata, request, model, version, label, what, None
        )
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        packed = response.metadata.get("signature_def")
        if packed is None or not packed.Unpack(signature_map):
            raise errors.UpstreamError(f"{what} answered no signature_def")
        answered = response.model_spec.version.value if response.model_spec.HasField("version") else version
        if not answered:
            raise errors.UpstreamError(f"{what} did not say which version it describes")
        return ModelMetadata(version=int(answered), signatures=dict(signature_map.signature_def))

    async def model_status(
        self, model: str, *, version: int | None = None, label: str | None = None
    ) -> list[get_model_status_pb2.ModelVersionStatus]:
        """The state of each version of a model the server knows (NOT_FOUND -> ModelNotFound)."""
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=_model_spec(model, version, label, ""))
        what = f"GetModelStatus({_describe(model, version, label)})"
        response = await self._call(
            "GetModelStatus", self._models.GetModelStatus, request, model, version, label, what, None
        )
        return list(response.model_version_status)

    async def reload_config(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        """Make the server serve ``config`` (TFS's whole model list, labels included); returns once it has.

        Raises:
            Conflict: the server refused the config as it stands (FAILED_PRECONDITION: e.g. a label on a version
                that is not loaded; INVALID_ARGUMENT: a config it cannot take).
            Unavailable, DeadlineExceeded, UpstreamError: the server could not answer.
        """
        request = model_management_pb2.ReloadConfigRequest(config=config)
        what = "HandleReloadConfigRequest"
        try:
            response = await self._call(
                what, self._models.HandleReloadConfigRequest, request, "", None, None, what, None
            )
        except errors.InvalidParameter as err:
            raise errors.Conflict(err.message) from err
        except errors.UpstreamError as err:
            cause = err.__cause__
            if isinstance(cause, grpc.aio.AioRpcError) and cause.code() == grpc.StatusCode.FAILED_PRECONDITION:
                raise errors.Conflict(f"the model server refused the new config: {cause.details()}") from err
            raise
        if response.status.error_code:  # TFS also puts a failure in the answer's status
            raise errors.Conflict(f"the model server refused the new config: {response.status.error_message}")

    async def _call(
        self,
        method: str,
        rpc: grpc.aio.UnaryUnaryMultiCallable,  # type: ignore[type-arg]
        request: object,
        model: str,
        version: int | None,
        label: str | None,
        what: str,
        request_id: str | None,
    ) -> Any:
        rid = request_id or request_id_var.get()
        metadata = (("x-request-id", rid),) if rid else None
        start = time.perf_counter()
        try:
            response = await rpc(request, timeout=self.deadline, metadata=metadata)
        except grpc.aio.AioRpcError as err:
            raise self._domain_error(err, what) from err
        except grpc.aio.UsageError as err:  # the channel was closed under us (shutting down)
            raise errors.Unavailable(f"{what}: the gateway is shutting down", retry_after=self._retry_after) from err
        finally:
            metrics.UPSTREAM_SECONDS.labels(
                metrics.model_label(model), str(version) if version else (label or ""), method
            ).observe(time.perf_counter() - start)
        return response

    def _domain_error(self, err: grpc.aio.AioRpcError, what: str) -> errors.SpotterError:
        code = err.code()
        detail = err.details() or code.name
        if code == grpc.StatusCode.NOT_FOUND:
            return errors.ModelNotFound(f"{what}: {detail}")
        if code == grpc.StatusCode.UNAVAILABLE:
            return errors.Unavailable(
                f"the model server at {self.target} is unavailable ({detail})", retry_after=self._retry_after
            )
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return errors.DeadlineExceeded(f"the model server did not answer {what} within {self.deadline:g}s")
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return errors.Overloaded(f"the model server is overloaded ({detail})", retry_after=self._retry_after)
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return errors.InvalidParameter(f"the model server refused {what}: {detail}")
        logger.warning("%s failed: %s %s", what, code.name, detail)
        return errors.UpstreamError(f"the model server failed {what}: {code.name}: {detail}")


def _model_spec(model: str, version: int | None, label: str | None, signature: str) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=model, signature_name=signature)
    if version is not None:
        spec.version.CopyFrom(wrappers_pb2.Int64Value(value=version))
    elif label is not None:
        spec.version_label = label
    return spec


def _describe(model: str, version: int | None, label: str | None) -> str:
    if version is not None:
        return f"{model} version {version}"
    if label is not None:
        return f"{model} label {label!r}"
    return model
