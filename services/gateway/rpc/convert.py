"""``spotter.v1`` messages to the dataplane's requests, and model descriptions and errors to messages (the results
carry their own: :meth:`~services.vision.results.DetectResult.to_proto`).

Presence is kept: an unset ``optional`` field is ``None`` (the gateway's default applies), as an absent REST query
parameter is. Range checks stay in the dataplane, the one place both transports share; only what the REST schema
can't express arrives here (an enum number this gateway does not know).
"""

from __future__ import annotations

from services import errors
from services.gateway.catalog import ModelDescription
from services.gateway.dataplane import ClassifyRequest, DetectRequest
from services.gen.spotter.v1 import detection_pb2, model_pb2
from services.grpc_errors import grpc_status, retry_after_seconds
from services.vision.tiling import TileMode

_TILE_MODES: dict[int, TileMode] = {
    detection_pb2.TILE_MODE_UNSPECIFIED: "auto",
    detection_pb2.TILE_MODE_AUTO: "auto",
    detection_pb2.TILE_MODE_ON: "on",
    detection_pb2.TILE_MODE_OFF: "off",
}
_KINDS = {
    "detector": model_pb2.MODEL_KIND_DETECTOR,
    "classifier": model_pb2.MODEL_KIND_CLASSIFIER,
    "unknown": model_pb2.MODEL_KIND_UNSUPPORTED,
}


def detect_request(message: detection_pb2.DetectRequest) -> DetectRequest:
    """The dataplane's request for a ``DetectRequest``.

    Raises:
        InvalidParameter: ``tile`` is a number this gateway does not know.
    """
    version, label = _selector(message)
    return DetectRequest(
        model=message.model,
        data=message.image.data,
        content_type=message.image.content_type or None,
        version=version,
        label=label,
        min_score=message.min_score if message.HasField("min_score") else None,
        max_detections=message.max_detections if message.HasField("max_detections") else None,
        tile=_tile(message.tile),
    )


def classify_request(message: detection_pb2.ClassifyRequest) -> ClassifyRequest:
    """The dataplane's request for a ``ClassifyRequest``."""
    version, label = _selector(message)
    return ClassifyRequest(
        model=message.model,
        data=message.image.data,
        content_type=message.image.content_type or None,
        version=version,
        label=label,
        top_k=message.top_k if message.HasField("top_k") else None,
    )


def model_message(model: ModelDescription) -> model_pb2.Model:
    return model_pb2.Model(
        name=model.name,
        versions=[
            model_pb2.ModelVersion(
                version=v.version,
                state=_state(v.state),
                kind=_KINDS.get(v.kind or "", model_pb2.MODEL_KIND_UNSPECIFIED),
                input_size=v.input_size,
                labels=[model_pb2.Label(id=i, name=n) for i, n in sorted((v.labels or {}).items())],
                views=v.views.views if v.views else None,
                crop_size=v.views.crop_size if v.views else None,
                object_size_px=list(v.views.object_size_px) if v.views and v.views.object_size_px else [],
            )
            for v in model.versions
        ],
        version_labels=model.version_labels,
    )


def frame_error(exc: errors.SpotterError) -> detection_pb2.FrameError:
    """A stream frame's error: what a unary call would have answered as its status."""
    return detection_pb2.FrameError(
        code=grpc_status(exc).value[0],
        reason=exc.code,
        message=exc.message,
        retry_after_seconds=retry_after_seconds(exc) or 0.0,
    )


def _selector(
    message: detection_pb2.DetectRequest | detection_pb2.ClassifyRequest,
) -> tuple[int | None, str | None]:
    chosen = message.WhichOneof("selector")
    if chosen == "version":
        return message.version, None
    if chosen == "label":
        return None, message.label
    return None, None


def _tile(value: int) -> TileMode:
    mode = _TILE_MODES.get(value)
    if mode is None:
        known = ", ".join(detection_pb2.TileMode.Name(v) for v in sorted(_TILE_MODES))
        raise errors.InvalidParameter(
            f"tile must be one of {known}, not {value}", details={"tile": value, "allowed": sorted(_TILE_MODES)}
        )
    return mode


def _state(name: str) -> str:
    """TFS's state name as our enum's value name (messages take enum values by name too)."""
    full = f"VERSION_STATE_{name}"
    return full if full in model_pb2.VersionState.DESCRIPTOR.values_by_name else "VERSION_STATE_UNSPECIFIED"
