"""What a model version's ``serving_default`` signature says: its kind, its image input and canvas size.

The contract (docs/architecture.md): ``detection_boxes`` among the outputs means a detector, ``probabilities`` a
classifier; the input is ``images`` uint8 ``[-1, S, S, 3]``. Foreign exports are taken as far as they fit: a single
uint8 input of another name, an open size (``[-1, -1, -1, 3]``, a TF Object Detection API export: letterboxed to a
configured canvas), a fixed batch dimension (the batcher then sends batches of at most that many).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from services.gen.tfs import meta_graph_pb2, types_pb2
from services.vision.tiling import ModelViews

Kind = Literal["detector", "classifier", "unknown"]


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """How to use one model version: its kind, its input tensor and canvas size, its labels."""

    model: str
    version: int
    kind: Kind
    input_name: str
    input_size: int
    max_batch: int | None  # a fixed batch dimension (TF OD API exports have 1); None when dynamic
    outputs: tuple[str, ...]
    labels: Mapping[int, str]
    problem: str | None = None  # why the gateway cannot serve it, when kind is "unknown"
    views: ModelViews = field(
        default_factory=ModelViews
    )  # how it sees an image (its spotter.json; foreign models: whole)


def unusable(name: str, version: int, problem: str) -> VersionInfo:
    return VersionInfo(name, version, "unknown", "", 0, None, (), {}, problem)


def describe_signature(
    name: str, version: int, signature: meta_graph_pb2.SignatureDef, dynamic_size: int
) -> VersionInfo:
    """Kind and input of a ``serving_default`` signature (``detection_boxes`` -> detector, ``probabilities``
    -> classifier); the canvas size from the ``images`` shape ``[-1, S, S, 3]``."""
    outputs = tuple(sorted(signature.outputs))
    kind: Kind
    if "detection_boxes" in signature.outputs:
        kind = "detector"
    elif "probabilities" in signature.outputs:
        kind = "classifier"
    else:
        return unusable(name, version, f"its outputs {list(outputs)} are neither a detector's nor a classifier's")
    if "images" in signature.inputs:
        input_name = "images"
    elif len(signature.inputs) == 1:
        input_name = next(iter(signature.inputs))
    else:
        return unusable(name, version, f"it takes {sorted(signature.inputs)}, not one image tensor")
    tensor = signature.inputs[input_name]
    if tensor.dtype != types_pb2.DT_UINT8:
        return unusable(name, version, f"its input {input_name!r} is not uint8")
    dims = [int(d.size) for d in tensor.tensor_shape.dim]
    if tensor.tensor_shape.unknown_rank or len(dims) != 4 or dims[3] not in (3, -1):
        return unusable(name, version, f"its input {input_name!r} is not [batch, height, width, 3]")
    height, width = dims[1], dims[2]
    if height > 0 and width > 0 and height != width:
        return unusable(name, version, f"its input is {height}x{width}; only square inputs are letterboxed")
    size = height if height > 0 else width if width > 0 else dynamic_size
    max_batch = dims[0] if dims[0] > 0 else None
    return VersionInfo(name, version, kind, input_name, size, max_batch, outputs, {})
