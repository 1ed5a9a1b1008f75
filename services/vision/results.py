"""The answers of detect and classify, one type each, with their two wire forms: the REST API's JSON and the
``spotter.v1`` protobuf messages.

- :class:`Box` and :class:`Detection` (one detected object), :class:`DetectResult` (``:detect`` / ``Detect``);
- :class:`Classification` (one label), :class:`ClassifyResult` (``:classify`` / ``Classify``).

The gateway's dataplane builds them, the REST routes and the gRPC service serialise them, the Python clients
(:mod:`services.client.rest`, :mod:`services.client.rpc`) read them back, and active learning reads them from the
REST client. They are plain frozen dataclasses, because the gateway builds one per request: nothing is validated
while building or writing. JSON is written by pydantic's compiled serializer straight from the dataclass
(``to_json``), and the same dataclasses are the OpenAPI schema of the REST answers (FastAPI reads them); reading JSON
(``from_json``, on the clients) validates it. pydantic is imported on first JSON use only, so the gRPC client, which
never needs it, stays light (no numpy, no pydantic; see tests/client/test_rpc.py).

Protobuf carries a score as ``float`` (32 bits), as models compute it; the gateway's scores are float32 values, so an
answer reads back equal through either form (tests/vision/test_results.py). TensorFlow-free, numpy-free.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from services.gen.spotter.v1 import detection_pb2

if TYPE_CHECKING:
    from pydantic import TypeAdapter

JsonInput = str | bytes | bytearray


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned box in pixels: ``xmin <= xmax``, ``ymin <= ymax``, origin at the top-left corner."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float

    @property
    def width(self) -> float:
        return self.xmax - self.xmin

    @property
    def height(self) -> float:
        return self.ymax - self.ymin

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    def clip(self, width: float, height: float) -> Box:
        """This box clipped to an image of ``width`` x ``height``."""
        return Box(
            min(max(self.xmin, 0.0), width),
            min(max(self.ymin, 0.0), height),
            min(max(self.xmax, 0.0), width),
            min(max(self.ymax, 0.0), height),
        )

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.xmin, self.ymin, self.xmax, self.ymax)

    def to_dict(self) -> dict[str, float]:
        return {"xmin": self.xmin, "ymin": self.ymin, "xmax": self.xmax, "ymax": self.ymax}


@dataclass(frozen=True, slots=True)
class Detection:
    """One detected object: its label, the label map id (from 1), the score and the box in original pixels."""

    label: str
    class_id: int
    score: float
    box: Box

    def to_dict(self) -> dict[str, object]:
        return {"label": self.label, "class_id": self.class_id, "score": self.score, "box": self.box.to_dict()}


@dataclass(frozen=True, slots=True)
class Classification:
    """One class of a classifier's answer: label, label-map id (from 1) and probability."""

    label: str
    class_id: int
    score: float

    def to_dict(self) -> dict[str, object]:
        return {"label": self.label, "class_id": self.class_id, "score": self.score}


@dataclass(frozen=True, slots=True)
class DetectResult:
    """Detections in pixels of the original image (EXIF orientation applied), by score descending."""

    model: str
    version: int
    width: int
    height: int
    detections: list[Detection]

    def to_json(self) -> bytes:
        """The REST API's JSON answer (UTF-8)."""
        return _adapter(DetectResult).dump_json(self)

    def to_dict(self) -> dict[str, Any]:
        """The JSON answer as Python values."""
        body: dict[str, Any] = _adapter(DetectResult).dump_python(self, mode="json")
        return body

    @classmethod
    def from_json(cls, data: JsonInput) -> DetectResult:
        """A JSON answer read back, its fields checked (fields it does not know are ignored).

        Raises:
            pydantic.ValidationError: (a ``ValueError``) not a detect answer.
        """
        result: DetectResult = _adapter(DetectResult).validate_json(data)
        return result

    def to_proto(self) -> detection_pb2.DetectResponse:
        """The ``spotter.v1.DetectResponse`` message."""
        message = detection_pb2.DetectResponse(
            model=self.model, version=self.version, width=self.width, height=self.height
        )
        add = message.detections.add
        for d in self.detections:
            # Filled in place: half the time of building each Box and Detection message and copying it in.
            box, target = d.box, add(label=d.label, class_id=d.class_id, score=d.score).box
            target.xmin, target.ymin, target.xmax, target.ymax = box.xmin, box.ymin, box.xmax, box.ymax
        return message

    @classmethod
    def from_proto(cls, message: detection_pb2.DetectResponse) -> DetectResult:
        """A ``spotter.v1.DetectResponse`` as a result."""
        return cls(
            model=message.model,
            version=message.version,
            width=message.width,
            height=message.height,
            detections=[
                Detection(d.label, d.class_id, d.score, Box(d.box.xmin, d.box.ymin, d.box.xmax, d.box.ymax))
                for d in message.detections
            ],
        )


@dataclass(frozen=True, slots=True)
class ClassifyResult:
    """The most likely labels of one image, by score descending."""

    model: str
    version: int
    predictions: list[Classification]

    def to_json(self) -> bytes:
        """The REST API's JSON answer (UTF-8)."""
        return _adapter(ClassifyResult).dump_json(self)

    def to_dict(self) -> dict[str, Any]:
        """The JSON answer as Python values."""
        body: dict[str, Any] = _adapter(ClassifyResult).dump_python(self, mode="json")
        return body

    @classmethod
    def from_json(cls, data: JsonInput) -> ClassifyResult:
        """A JSON answer read back, its fields checked (fields it does not know are ignored).

        Raises:
            pydantic.ValidationError: (a ``ValueError``) not a classify answer.
        """
        result: ClassifyResult = _adapter(ClassifyResult).validate_json(data)
        return result

    def to_proto(self) -> detection_pb2.ClassifyResponse:
        """The ``spotter.v1.ClassifyResponse`` message."""
        message = detection_pb2.ClassifyResponse(model=self.model, version=self.version)
        add = message.predictions.add
        for p in self.predictions:
            add(label=p.label, class_id=p.class_id, score=p.score)
        return message

    @classmethod
    def from_proto(cls, message: detection_pb2.ClassifyResponse) -> ClassifyResult:
        """A ``spotter.v1.ClassifyResponse`` as a result."""
        return cls(
            model=message.model,
            version=message.version,
            predictions=[Classification(p.label, p.class_id, p.score) for p in message.predictions],
        )


@functools.cache
def _adapter(cls: type[Any]) -> TypeAdapter[Any]:
    """The JSON (de)serializer of one result type, built once, on first use."""
    from pydantic import TypeAdapter

    return TypeAdapter(cls)
