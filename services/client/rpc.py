"""A small typed client for Spotter's gRPC API (``spotter.v1``): grpcio, protobuf, the generated stubs and the
result types only.

Inference answers are the results every transport shares (:mod:`services.vision.results`): ``detect`` and each
stream frame give a :class:`~services.vision.results.DetectResult`, ``classify`` a
:class:`~services.vision.results.ClassifyResult`, equal to what the REST client reads for the same image. Model
descriptions are the generated ``Model`` messages, typed by their ``.pyi`` stubs. Errors are :mod:`services.errors`
classes, decided by the one mapping the server uses (:mod:`services.grpc_errors`, inverted):
``ModelNotFound``, ``Overloaded`` with its ``retry_after``... with the ``grpc.RpcError`` as ``__cause__``.

    with DetectionClient("127.0.0.1:50051", api_key=key) as client:
        result = client.detect(Path("street.jpg"), model="demo")
        for d in result.detections:
            print(d.label, d.score, d.box.xmin, d.box.ymin, d.box.xmax, d.box.ymax)
        for frame in client.detect_stream(video_frames(), model="demo"):
            print(frame.frame_id, len(frame.unwrap().detections))
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, cast

import grpc

from services import errors
from services.gen.spotter.v1 import detection_pb2, detection_pb2_grpc, model_pb2
from services.grpc_errors import API_KEY_KEY, ERROR_CODE_KEY, REQUEST_ID_KEY, RETRY_AFTER_KEY, error_from_status
from services.vision.results import ClassifyResult, DetectResult

Tile = Literal["auto", "on", "off"]
Image = bytes | Path
Frame = Image | tuple[str, Image]
"""A stream frame: an image (its id is its index), or ``(frame_id, image)``."""

MiB = 1024 * 1024
_TILES = {"auto": detection_pb2.TILE_MODE_AUTO, "on": detection_pb2.TILE_MODE_ON, "off": detection_pb2.TILE_MODE_OFF}
_MEDIA_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}
_STATUS_BY_NUMBER = {status.value[0]: status for status in grpc.StatusCode}
_SERVICE = detection_pb2.DESCRIPTOR.services_by_name["DetectionService"].full_name
# Describing models changes nothing: gRPC itself retries those calls while the gateway is briefly unreachable.
_SERVICE_CONFIG = {
    "methodConfig": [
        {
            "name": [{"service": _SERVICE, "method": "ListModels"}, {"service": _SERVICE, "method": "GetModel"}],
            "retryPolicy": {
                "maxAttempts": 3,
                "initialBackoff": "0.2s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ]
}


@dataclass(frozen=True, slots=True)
class FrameResult:
    """One frame's answer in a stream: its detections, or the error that frame got (the stream went on)."""

    frame_id: str
    result: DetectResult | None
    error: errors.SpotterError | None

    def unwrap(self) -> DetectResult:
        """The detections, or the frame's error raised."""
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


@dataclass(frozen=True, slots=True)
class DrawnImage:
    """An encoded image: its bytes and media type (``image/jpeg`` or ``image/png``)."""

    data: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class AnnotateResult:
    """``Annotate``'s answer: the detections, and the image with them drawn."""

    result: DetectResult
    image: DrawnImage


class DetectionClient:
    """Calls a gateway's ``spotter.v1.DetectionService``.

    Args:
        target: The gateway's gRPC address, ``host:port`` (50051 by default).
        api_key: Sent as ``x-api-key`` metadata when given.
        timeout: Deadline in seconds of each unary call (None: no deadline); a call's own ``timeout`` overrides it.
        credentials: TLS channel credentials; plaintext when None.
        max_message_bytes: The largest message sent or received (an image is one message; so is an annotated one).
        options: More gRPC channel arguments.
    """

    def __init__(
        self,
        target: str,
        *,
        api_key: str | None = None,
        timeout: float | None = 30.0,
        credentials: grpc.ChannelCredentials | None = None,
        max_message_bytes: int = 64 * MiB,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.target = target
        self.timeout = timeout
        self._api_key = api_key
        channel_options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.enable_retries", 1),
            ("grpc.service_config", json.dumps(_SERVICE_CONFIG)),
            *options,
        ]
        if credentials is None:
            self._channel = grpc.insecure_channel(target, options=channel_options)
        else:
            self._channel = grpc.secure_channel(target, credentials, options=channel_options)
        self._stub = detection_pb2_grpc.DetectionServiceStub(self._channel)  # type: ignore[no-untyped-call]

    def __enter__(self) -> DetectionClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    # -- inference -------------------------------------------------------------------------------------------------

    def detect(
        self,
        image: Image,
        *,
        model: str,
        version: int | None = None,
        label: str | None = None,
        min_score: float | None = None,
        max_detections: int | None = None,
        tile: Tile = "auto",
        content_type: str | None = None,
        timeout: float | None = None,
        request_id: str | None = None,
    ) -> DetectResult:
        """Detect objects in an image (bytes, or a file path); boxes in pixels of the original image.

        ``None`` parameters take the gateway's defaults; ``version`` and ``label`` choose a model version (neither:
        the latest).
        """
        request = detect_request(
            image,
            model=model,
            version=version,
            label=label,
            min_score=min_score,
            max_detections=max_detections,
            tile=tile,
            content_type=content_type,
        )
        answer = cast(detection_pb2.DetectResponse, self._unary(self._stub.Detect, request, timeout, request_id))
        return DetectResult.from_proto(answer)

    def annotate(
        self,
        image: Image,
        *,
        model: str,
        media_type: str = "image/jpeg",
        version: int | None = None,
        label: str | None = None,
        min_score: float | None = None,
        max_detections: int | None = None,
        tile: Tile = "auto",
        content_type: str | None = None,
        timeout: float | None = None,
        request_id: str | None = None,
    ) -> AnnotateResult:
        """Detect, and get the image back with the boxes drawn (``media_type`` image/jpeg or image/png)."""
        request = detection_pb2.AnnotateRequest(
            request=detect_request(
                image,
                model=model,
                version=version,
                label=label,
                min_score=min_score,
                max_detections=max_detections,
                tile=tile,
                content_type=content_type,
            ),
            media_type=media_type,
        )
        answer = cast(detection_pb2.AnnotateResponse, self._unary(self._stub.Annotate, request, timeout, request_id))
        return AnnotateResult(
            DetectResult.from_proto(answer.result), DrawnImage(answer.image.data, answer.image.content_type)
        )

    def classify(
        self,
        image: Image,
        *,
        model: str,
        version: int | None = None,
        label: str | None = None,
        top_k: int | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
        request_id: str | None = None,
    ) -> ClassifyResult:
        """The ``top_k`` most likely labels of an image."""
        data, content_type = _image(image, content_type)
        request = detection_pb2.ClassifyRequest(
            model=model, image=detection_pb2.Image(data=data, content_type=content_type), top_k=top_k
        )
        _select(request, version, label)
        answer = cast(detection_pb2.ClassifyResponse, self._unary(self._stub.Classify, request, timeout, request_id))
        return ClassifyResult.from_proto(answer)

    def detect_stream(
        self,
        frames: Iterable[Frame],
        *,
        model: str,
        version: int | None = None,
        label: str | None = None,
        min_score: float | None = None,
        max_detections: int | None = None,
        tile: Tile = "auto",
        content_type: str | None = None,
        timeout: float | None = None,
        request_id: str | None = None,
    ) -> Iterator[FrameResult]:
        """Detect objects in a stream of frames; one :class:`FrameResult` per frame, in the order sent.

        ``frames`` is read as the gateway takes them (a generator reading a camera works); ``timeout`` bounds the
        whole stream (default: none). Stopping the iteration early cancels the call: the gateway drops the frames
        it still had.

        Raises:
            SpotterError: the stream as a whole failed (no key, the gateway went away...); a single frame's error
                is in its ``FrameResult`` instead.
        """

        def requests() -> Iterator[detection_pb2.DetectStreamRequest]:
            for index, frame in enumerate(frames):
                frame_id, image = frame if isinstance(frame, tuple) else (str(index), frame)
                request = detect_request(
                    image,
                    model=model,
                    version=version,
                    label=label,
                    min_score=min_score,
                    max_detections=max_detections,
                    tile=tile,
                    content_type=content_type,
                )
                yield detection_pb2.DetectStreamRequest(frame_id=frame_id, request=request)

        call = self._stub.DetectStream(requests(), timeout=timeout, metadata=self._metadata(request_id))
        try:
            for answer in call:
                if answer.WhichOneof("outcome") == "error":
                    yield FrameResult(answer.frame_id, None, frame_error(answer.error))
                else:
                    yield FrameResult(answer.frame_id, DetectResult.from_proto(answer.result), None)
        except grpc.RpcError as err:
            raise error_from_rpc(err) from err
        finally:
            call.cancel()  # a no-op once the stream has ended; else the gateway stops working for us

    # -- models ----------------------------------------------------------------------------------------------------

    def list_models(self, *, timeout: float | None = None) -> list[model_pb2.Model]:
        """Every model the gateway knows, with its versions."""
        response = self._unary(self._stub.ListModels, model_pb2.ListModelsRequest(), timeout, None)
        return list(cast(model_pb2.ListModelsResponse, response).models)

    def get_model(self, name: str, *, timeout: float | None = None) -> model_pb2.Model:
        """One model's versions, states, kind, input size and labels."""
        response = self._unary(self._stub.GetModel, model_pb2.GetModelRequest(model=name), timeout, None)
        return cast(model_pb2.GetModelResponse, response).model

    # -- plumbing --------------------------------------------------------------------------------------------------

    def _metadata(self, request_id: str | None) -> list[tuple[str, str]]:
        metadata = []
        if self._api_key:
            metadata.append((API_KEY_KEY, self._api_key))
        if request_id:
            metadata.append((REQUEST_ID_KEY, request_id))
        return metadata

    def _unary(self, method: Any, request: Any, timeout: float | None, request_id: str | None) -> Any:
        try:
            return method(
                request,
                timeout=timeout if timeout is not None else self.timeout,
                metadata=self._metadata(request_id),
            )
        except grpc.RpcError as err:
            raise error_from_rpc(err) from err


def detect_request(
    image: Image,
    *,
    model: str,
    version: int | None = None,
    label: str | None = None,
    min_score: float | None = None,
    max_detections: int | None = None,
    tile: Tile = "auto",
    content_type: str | None = None,
) -> detection_pb2.DetectRequest:
    """A ``DetectRequest`` (for :meth:`DetectionClient.detect` and each frame of a stream)."""
    if tile not in _TILES:
        raise errors.InvalidParameter(f"tile must be one of {', '.join(_TILES)}, not {tile!r}")
    data, content_type = _image(image, content_type)
    request = detection_pb2.DetectRequest(
        model=model,
        image=detection_pb2.Image(data=data, content_type=content_type),
        min_score=min_score,
        max_detections=max_detections,
        tile=_TILES[tile],
    )
    _select(request, version, label)
    return request


def error_from_rpc(err: grpc.RpcError) -> errors.SpotterError:
    """The :mod:`services.errors` exception a failed call stands for."""
    call = cast(grpc.Call, err)
    return error_from_status(call.code(), call.details() or "", call.trailing_metadata() or ())


def frame_error(error: detection_pb2.FrameError) -> errors.SpotterError:
    """The :mod:`services.errors` exception of one stream frame's ``FrameError``."""
    status = _STATUS_BY_NUMBER.get(error.code, grpc.StatusCode.UNKNOWN)
    metadata = [(ERROR_CODE_KEY, error.reason)]
    if error.retry_after_seconds:
        metadata.append((RETRY_AFTER_KEY, str(error.retry_after_seconds)))
    return error_from_status(status, error.message, metadata)


def _image(image: Image, content_type: str | None) -> tuple[bytes, str]:
    if isinstance(image, Path):
        return image.read_bytes(), content_type or _MEDIA_TYPES.get(image.suffix.lower(), "")
    return image, content_type or ""


def _select(
    request: detection_pb2.DetectRequest | detection_pb2.ClassifyRequest, version: int | None, label: str | None
) -> None:
    if version is not None and label is not None:
        raise errors.InvalidParameter("give a version or a label, not both")
    if version is not None:
        request.version = version
    elif label is not None:
        request.label = label
