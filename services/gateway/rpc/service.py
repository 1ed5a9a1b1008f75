"""``spotter.v1.DetectionService``: each method a few lines over the dataplane, like the REST routes.

Inference methods take the dataplane's admission ticket first (each ``DetectStream`` frame its own), as REST does.
Errors are raised as :mod:`services.errors` and mapped to statuses by the interceptor
(:mod:`services.gateway.rpc.interceptors`), which also records the request metrics; methods only tell it the model
and the version (:func:`~services.gateway.rpc.interceptors.current_call`).

``DetectStream`` serves up to ``grpc_stream_window`` frames at once, so consecutive frames share batches, and
answers them in the order they came. Reading frames and writing answers are separate tasks: a client that waits for
an answer before it sends the next frame is served too. A frame that fails with one of our errors is answered with
a ``FrameError`` and the stream goes on; each frame is recorded in the metrics as one ``grpc_detect_stream`` request.
When the call ends early (the client cancels or goes away, the deadline passes), the frames in flight are cancelled
and leave the batch queue.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from services import errors
from services.gateway import metrics
from services.gateway.calls import CLIENT_CLOSED_REQUEST
from services.gateway.config import GatewaySettings
from services.gateway.dataplane import Dataplane
from services.gateway.rpc import convert
from services.gateway.rpc.interceptors import current_call, record_failure, record_request
from services.gen.spotter.v1 import detection_pb2, detection_pb2_grpc, model_pb2
from services.vision.draw import negotiate_media_type

_Context = grpc.aio.ServicerContext[Any, Any]
_STREAM_ENDPOINT = "grpc_detect_stream"


class DetectionServicer(detection_pb2_grpc.DetectionServiceServicer):
    """The gRPC methods over one :class:`~services.gateway.dataplane.Dataplane` (the one REST uses)."""

    def __init__(self, dataplane: Dataplane, settings: GatewaySettings) -> None:
        self._dataplane = dataplane
        self._window = settings.grpc_stream_window

    async def Detect(self, request: detection_pb2.DetectRequest, context: _Context) -> detection_pb2.DetectResponse:
        with self._dataplane.admit():
            result = await self._dataplane.detect(convert.detect_request(request))
        current_call().version = result.version
        return result.to_proto()

    async def Annotate(
        self, request: detection_pb2.AnnotateRequest, context: _Context
    ) -> detection_pb2.AnnotateResponse:
        call = current_call()
        call.model = request.request.model or None
        media_type = negotiate_media_type(request.media_type or None, default="image/jpeg")
        with self._dataplane.admit():
            annotated = await self._dataplane.annotate(convert.detect_request(request.request), media_type)
        call.version = annotated.result.version
        return detection_pb2.AnnotateResponse(
            result=annotated.result.to_proto(),
            image=detection_pb2.Image(data=annotated.image, content_type=annotated.media_type),
        )

    async def Classify(
        self, request: detection_pb2.ClassifyRequest, context: _Context
    ) -> detection_pb2.ClassifyResponse:
        with self._dataplane.admit():
            result = await self._dataplane.classify(convert.classify_request(request))
        current_call().version = result.version
        return result.to_proto()

    async def ListModels(self, request: model_pb2.ListModelsRequest, context: _Context) -> model_pb2.ListModelsResponse:
        return model_pb2.ListModelsResponse(
            models=[convert.model_message(m) for m in await self._dataplane.list_models()]
        )

    async def GetModel(self, request: model_pb2.GetModelRequest, context: _Context) -> model_pb2.GetModelResponse:
        return model_pb2.GetModelResponse(model=convert.model_message(await self._dataplane.get_model(request.model)))

    async def DetectStream(
        self, request_iterator: AsyncIterator[detection_pb2.DetectStreamRequest], context: _Context
    ) -> AsyncIterator[detection_pb2.DetectStreamResponse]:
        slots = asyncio.Semaphore(self._window)
        # Frames being served, in arrival order; None once the client has sent its last frame.
        order: asyncio.Queue[asyncio.Task[detection_pb2.DetectStreamResponse] | BaseException | None] = asyncio.Queue()
        frames: set[asyncio.Task[detection_pb2.DetectStreamResponse]] = set()

        async def read() -> None:
            try:
                async for frame in request_iterator:
                    await slots.acquire()  # past the window, stop reading: HTTP/2 flow control holds the client
                    task = asyncio.create_task(self._frame(frame))
                    frames.add(task)
                    task.add_done_callback(frames.discard)
                    order.put_nowait(task)
                order.put_nowait(None)
            except Exception as err:  # a broken request stream ends the call, after the frames before it
                order.put_nowait(err)

        reader = asyncio.create_task(read())
        try:
            while (item := await order.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                try:
                    answer = await item
                finally:
                    slots.release()
                yield answer
        finally:
            pending = [reader, *frames]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _frame(self, frame: detection_pb2.DetectStreamRequest) -> detection_pb2.DetectStreamResponse:
        """One frame: its detections or its error, recorded as one request."""
        model = frame.request.model or None
        version: int | None = None
        status = 500
        inflight = metrics.INFLIGHT_REQUESTS.labels(_STREAM_ENDPOINT)
        inflight.inc()
        start = time.perf_counter()
        try:
            with self._dataplane.admit():
                result = await self._dataplane.detect(convert.detect_request(frame.request))
            version, status = result.version, 200
            return detection_pb2.DetectStreamResponse(frame_id=frame.frame_id, result=result.to_proto())
        except errors.SpotterError as err:
            status = record_failure(_STREAM_ENDPOINT, model, err)
            return detection_pb2.DetectStreamResponse(frame_id=frame.frame_id, error=convert.frame_error(err))
        except asyncio.CancelledError:
            status = CLIENT_CLOSED_REQUEST
            raise
        finally:
            record_request(_STREAM_ENDPOINT, model, version, status, time.perf_counter() - start)
            inflight.dec()
