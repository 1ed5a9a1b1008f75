"""The transport-neutral heart of the gateway: detect, annotate, classify, describe models, readiness.

REST routes (``services.gateway.api``) and the gRPC servicer call these methods with plain dataclasses and write
the results (:mod:`services.vision.results`, which holds both wire forms) or :mod:`services.errors` in their own
format; nothing here knows HTTP or gRPC. CPU work on images (decoding, letterboxing, drawing) runs in worker threads
so the event loop keeps accepting requests and forming batches. Every view of an image (the whole image, plus its
tiles when tiling) goes through the one shared batcher.

Transports take an admission ticket (:meth:`Dataplane.admit`) before they read an inference request's body and hold
it until they answer, so an overloaded gateway refuses a request before it costs a read or a decode
(:mod:`services.gateway.admission`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np

from services import errors
from services.gateway import metrics
from services.gateway.admission import Admission
from services.gateway.batcher import Batcher, BatchKey, Outputs, PredictFn
from services.gateway.catalog import ModelCatalog, ModelDescription, Readiness
from services.gateway.config import GatewaySettings
from services.gateway.shadow import Shadows, ShadowSample
from services.gateway.signatures import Kind, VersionInfo
from services.gateway.tfs import TfsClient
from services.gateway.traffic_sample import TrafficSampler
from services.vision.draw import draw_detections, encode_image
from services.vision.images import DecodedImage, declared_pixels, decode_image
from services.vision.letterbox import Letterbox, letterbox
from services.vision.nms import merge_detections
from services.vision.outputs import classifications_from_probabilities, detections_from_outputs
from services.vision.results import ClassifyResult, Detection, DetectResult
from services.vision.tiling import TILE_MODES, Tile, TileMode, plan_views

MAX_DETECTIONS_LIMIT = 1000
_MAX_MODEL_NAME = 256


@dataclass(frozen=True, slots=True)
class DetectRequest:
    """One image to detect objects in. ``None`` parameters take the gateway's defaults."""

    model: str
    data: bytes
    content_type: str | None = None
    version: int | None = None
    label: str | None = None
    min_score: float | None = None
    max_detections: int | None = None
    tile: TileMode = "auto"


@dataclass(frozen=True, slots=True)
class AnnotateResult:
    """The input image with the detections drawn, encoded as ``media_type``."""

    result: DetectResult
    image: bytes
    media_type: str


@dataclass(frozen=True, slots=True)
class ClassifyRequest:
    model: str
    data: bytes
    content_type: str | None = None
    version: int | None = None
    label: str | None = None
    top_k: int | None = None


@dataclass(frozen=True, slots=True)
class _Prepared:
    """An image ready for the model: decoded, and each of its views on its canvas."""

    decoded: DecodedImage
    canvases: list[tuple[np.ndarray, Letterbox]]
    decode_seconds: float


class Dataplane:
    """Inference and model information over a model catalog and a batcher; shared by every transport."""

    def __init__(
        self,
        settings: GatewaySettings,
        catalog: ModelCatalog,
        batcher: Batcher,
        *,
        traffic_sampler: TrafficSampler | None = None,
    ) -> None:
        self._settings = settings
        self._traffic_sampler = traffic_sampler  # warmup from real traffic (None: off)
        self._catalog = catalog
        self._batcher = batcher
        self.admission = Admission(settings.admission_limit, retry_after=settings.retry_after_seconds)
        # Decoding is where one request's memory peaks (up to max_image_pixels x 3 bytes, more while tiling):
        # bounding the decodes at once bounds the gateway's memory whatever the admitted requests send.
        self._decode_slots = asyncio.Semaphore(settings.max_concurrent_decodes)
        self.shadows = Shadows(settings, catalog, batcher, self.admission)

    def admit(self) -> AbstractContextManager[None]:
        """A ticket for one inference request: take it before reading the body, hold it until the answer.

        Raises:
            Overloaded: the gateway already serves its limit of requests (at once; nothing was read).
        """
        return self.admission.ticket()

    # -- inference -------------------------------------------------------------------------------------------------

    async def detect(self, request: DetectRequest) -> DetectResult:
        """Detect objects in one image.

        Raises:
            SpotterError: bad parameters or image (4xx classes), unknown model (ModelNotFound), the model server's
                trouble (Unavailable, DeadlineExceeded, UpstreamError), a full queue (Overloaded).
        """
        _, result = await self._detect(request, keep_pixels=False)
        return result

    async def annotate(self, request: DetectRequest, media_type: str) -> AnnotateResult:
        """Detect, then draw the detections on the image and encode it as ``media_type`` (image/jpeg|png)."""
        decoded, result = await self._detect(request, keep_pixels=True)
        image = await asyncio.to_thread(_draw, decoded, result.detections, media_type)
        return AnnotateResult(result, image, media_type)

    async def classify(self, request: ClassifyRequest) -> ClassifyResult:
        """The ``top_k`` most likely labels of one image."""
        _check_common(request.model, request.version, request.label)
        top_k = request.top_k if request.top_k is not None else self._settings.default_top_k
        if top_k < 1:
            raise errors.InvalidParameter(f"top_k must be at least 1, not {top_k}", details={"top_k": top_k})
        info = await self._resolve(request.model, request.version, request.label, "classifier")
        prepared = await self._prepare(request.data, request.content_type, info, "off", reduce=True)
        info, [outputs] = await self._infer(
            request.model, request.version, request.label, info, prepared.canvases, "classifier"
        )
        if "probabilities" not in outputs:
            raise errors.UpstreamError(f"{info.model} version {info.version} answered no probabilities")
        predictions = classifications_from_probabilities(outputs["probabilities"], info.labels, top_k=top_k)
        return ClassifyResult(info.model, info.version, predictions)

    async def _detect(self, request: DetectRequest, *, keep_pixels: bool) -> tuple[DecodedImage, DetectResult]:
        _check_common(request.model, request.version, request.label)
        min_score = request.min_score if request.min_score is not None else self._settings.default_min_score
        max_detections = (
            request.max_detections if request.max_detections is not None else self._settings.default_max_detections
        )
        if not 0.0 <= min_score <= 1.0:
            raise errors.InvalidParameter(f"min_score must be within [0, 1], not {min_score}")
        if not 1 <= max_detections <= MAX_DETECTIONS_LIMIT:
            raise errors.InvalidParameter(
                f"max_detections must be within [1, {MAX_DETECTIONS_LIMIT}], not {max_detections}"
            )
        if request.tile not in TILE_MODES:
            raise errors.InvalidParameter(f"tile must be one of {', '.join(TILE_MODES)}, not {request.tile!r}")

        info = await self._resolve(request.model, request.version, request.label, "detector")
        # Reduced (DCT-scaled) JPEG decoding only when every pixel is not needed: nothing drawn, and (decided from
        # the header, in _prepare_in_thread) one whole-image view, no tiles.
        reduce = not keep_pixels
        prepared = await self._prepare(request.data, request.content_type, info, request.tile, reduce=reduce)
        decoded, canvases = prepared.decoded, prepared.canvases
        infer_start = time.perf_counter()
        info, outputs = await self._infer(request.model, request.version, request.label, info, canvases, "detector")
        infer_seconds = time.perf_counter() - infer_start

        def to_detections(version: VersionInfo, view_outputs: list[Outputs]) -> list[Detection]:
            return self._view_detections(version, canvases, view_outputs, min_score, max_detections)

        found = to_detections(info, outputs)
        shadow = self.shadows.sampled(info)
        if shadow is not None:  # a background run: never awaited here, its failures never reach this request
            self.shadows.offer(shadow, ShadowSample(info, canvases, found, infer_seconds, to_detections))

        version = str(info.version)
        metrics.DETECTIONS_PER_IMAGE.labels(info.model, version).observe(len(found))
        by_label: dict[str, list[float]] = {}
        for d in found:
            by_label.setdefault(d.label, []).append(d.score)
        for label, scores in by_label.items():  # one labels() lookup per label, not per detection
            child = metrics.DETECTION_SCORE.labels(info.model, version, label)
            for score in scores:
                child.observe(score)
        return decoded, DetectResult(info.model, info.version, decoded.width, decoded.height, found)

    def _view_detections(
        self,
        info: VersionInfo,
        canvases: list[tuple[np.ndarray, Letterbox]],
        outputs: list[Outputs],
        min_score: float,
        max_detections: int,
    ) -> list[Detection]:
        """One image's detections from the outputs of each of its views (tiles merged)."""
        found: list[Detection] = []
        for (_, placed), view_outputs in zip(canvases, outputs, strict=True):
            found.extend(_detections(info, view_outputs, placed, min_score, max_detections))
        if len(canvases) > 1:
            found = merge_detections(found, iou_threshold=self._settings.tile_nms_iou, max_detections=max_detections)
        return found

    async def _resolve(self, model: str, version: int | None, label: str | None, wanted: Kind) -> VersionInfo:
        info = await self._catalog.resolve(model, version=version, label=label)
        if info.kind == "unknown":
            raise errors.InvalidParameter(
                f"model {model!r} version {info.version} cannot be served by the gateway: {info.problem}"
            )
        if info.kind != wanted:
            endpoint = "detect" if info.kind == "detector" else "classify"
            raise errors.InvalidParameter(
                f"model {model!r} is a {info.kind}: use {endpoint} (POST /v1/models/{model}:{endpoint}) instead",
                details={"kind": info.kind, "endpoint": endpoint},
            )
        return info

    async def _prepare(
        self, data: bytes, content_type: str | None, info: VersionInfo, tile: TileMode, *, reduce: bool
    ) -> _Prepared:
        """Decode, plan the views and letterbox them: one trip to a worker thread, off the event loop."""
        async with self._decode_slots:
            inline = self._decode_inline(data)
            metrics.DECODES.labels(info.model, "loop" if inline else "thread").inc()
            if inline:
                prepared = self._prepare_in_thread(data, content_type, info, tile, reduce)
            else:
                prepared = await asyncio.to_thread(self._prepare_in_thread, data, content_type, info, tile, reduce)
        metrics.DECODE_SECONDS.labels(info.model).observe(prepared.decode_seconds)
        if len(prepared.canvases) > 1:
            metrics.TILED_IMAGES.labels(info.model).inc()
        return prepared

    def _decode_inline(self, data: bytes) -> bool:
        """Whether to decode on the event loop: only a small image (a few ms at most) while this request is the
        only one served, when blocking the loop delays nobody and the thread hop (1-3 ms on a busy machine) would
        be most of the gateway's latency."""
        limit = self._settings.inline_decode_max_pixels
        if not limit or self.admission.admitted > 1 or self._batcher.pending:
            return False
        pixels = declared_pixels(data)
        return pixels is not None and pixels <= limit

    def _prepare_in_thread(
        self, data: bytes, content_type: str | None, info: VersionInfo, tile: TileMode, reduce: bool
    ) -> _Prepared:
        size = info.input_size

        def plan(width: int, height: int) -> list[Tile]:
            return plan_views(
                width,
                height,
                size,
                tile,
                overlap=self._settings.tile_overlap,
                max_tiles=self._settings.max_tiles,
                views=info.views.views,  # tile=auto follows how the model sees an image
            )

        def reduce_to(width: int, height: int) -> int | None:
            return size if len(plan(width, height)) == 1 else None  # tiles need every pixel

        start = time.perf_counter()
        decoded = decode_image(
            data,
            content_type=content_type,
            max_bytes=self._settings.max_image_bytes,
            max_pixels=self._settings.max_image_pixels,
            target_size=reduce_to if reduce else None,
        )
        decode_seconds = time.perf_counter() - start
        views = plan(decoded.width, decoded.height)
        canvases = [letterbox(decoded, size, region=view.region) for view in views]
        return _Prepared(decoded, canvases, decode_seconds)

    async def _infer(
        self,
        model: str,
        version: int | None,
        label: str | None,
        info: VersionInfo,
        canvases: list[tuple[np.ndarray, Letterbox]],
        wanted: Kind,
    ) -> tuple[VersionInfo, list[Outputs]]:
        """Run every view through the batcher, within the request deadline.

        When the latest version vanished between resolving and predicting (NOT_FOUND), the catalog is refreshed and
        the views are sent once more to what is now the latest version.
        """
        if self._traffic_sampler is not None:
            self._traffic_sampler.offer(info.model, [c for c, _ in canvases])  # never waits, never raises
        try:
            async with asyncio.timeout(self._settings.request_timeout_seconds):
                try:
                    return info, await self._submit_all(info, [c for c, _ in canvases])
                except errors.NotFound:
                    if version is not None or label is not None:
                        raise
                await self._catalog.refresh_model(model)
                fresh = await self._resolve(model, None, None, wanted)
                if fresh.input_size != info.input_size:
                    raise errors.Unavailable(
                        f"model {model!r} changed versions while this request was served; retry",
                        retry_after=self._settings.retry_after_seconds,
                    )
                return fresh, await self._submit_all(fresh, [c for c, _ in canvases])
        except TimeoutError:
            raise errors.DeadlineExceeded(
                f"no answer from model {model!r} within {self._settings.request_timeout_seconds:g}s"
            ) from None

    async def _submit_all(self, info: VersionInfo, images: Sequence[np.ndarray]) -> list[Outputs]:
        key = BatchKey(info.model, info.version, info.input_name, info.max_batch)
        if len(images) == 1:
            return [await self._batcher.submit(key, images[0])]
        # All views at once, so they ride in the same batches; if one fails the others leave the queue.
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._batcher.submit(key, image)) for image in images]
        except BaseExceptionGroup as failed:
            raise _first_error(failed) from None
        return [task.result() for task in tasks]

    # -- models and readiness --------------------------------------------------------------------------------------

    async def list_models(self) -> list[ModelDescription]:
        """Every model the gateway knows, with its versions."""
        return await self._catalog.describe_all()

    async def get_model(self, name: str) -> ModelDescription:
        """One model's versions, states, kind, input size and labels (ModelNotFound if unknown)."""
        _check_common(name, None, None)
        return await self._catalog.describe(name)

    async def readiness(self) -> Readiness:
        """Whether the gateway can serve: the model server answers and a model has an AVAILABLE version."""
        return await self._catalog.readiness()


def tfs_batch_predictor(tfs: TfsClient) -> PredictFn:
    """The batcher's Predict: one ``serving_default`` call with the stacked images, on the key's exact version."""

    async def predict(key: BatchKey, images: np.ndarray, request_id: str | None) -> dict[str, np.ndarray]:
        return await tfs.predict(key.model, {key.input_name: images}, version=key.version, request_id=request_id)

    return predict


def _check_common(model: str, version: int | None, label: str | None) -> None:
    if not model or len(model) > _MAX_MODEL_NAME:
        raise errors.InvalidParameter(f"the model name must be 1 to {_MAX_MODEL_NAME} characters")
    if version is not None and label is not None:
        raise errors.InvalidParameter(
            "give a version or a label, not both", details={"version": version, "label": label}
        )
    if version is not None and version < 1:
        raise errors.InvalidParameter(f"version must be at least 1, not {version}")
    if label is not None and not label:
        raise errors.InvalidParameter("label must not be empty")


def _detections(
    info: VersionInfo, outputs: Outputs, placed: Letterbox, min_score: float, max_detections: int
) -> list[Detection]:
    try:
        boxes, scores, classes = (outputs[k] for k in ("detection_boxes", "detection_scores", "detection_classes"))
    except KeyError as err:
        raise errors.UpstreamError(f"{info.model} version {info.version} answered no {err.args[0]}") from None
    return detections_from_outputs(
        boxes,
        scores,
        classes,
        outputs.get("num_detections"),
        placed,
        info.labels,
        min_score=min_score,
        max_detections=max_detections,
    )


def _draw(decoded: DecodedImage, detections: Sequence[Detection], media_type: str) -> bytes:
    return encode_image(draw_detections(decoded.image, detections), media_type)


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to report for a group of failed views: ours first, then anything else."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    ours = [e for e in leaves if isinstance(e, errors.SpotterError)]
    return (ours or leaves)[0]
