"""Reading a version's serving_default signature: Spotter's contract, and foreign exports as far as they fit."""

from __future__ import annotations

import pytest

from services.gateway.signatures import describe_signature
from services.gateway.tensors import shape_proto
from services.gen.tfs import meta_graph_pb2, types_pb2

DETECTOR_OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")


def signature(
    inputs: dict[str, tuple[int, list[int]]], outputs: tuple[str, ...] = DETECTOR_OUTPUTS
) -> meta_graph_pb2.SignatureDef:
    sig = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    for name, (dtype, dims) in inputs.items():
        sig.inputs[name].CopyFrom(
            meta_graph_pb2.TensorInfo(name=f"{name}:0", dtype=dtype, tensor_shape=shape_proto(dims))
        )
    for name in outputs:
        sig.outputs[name].CopyFrom(meta_graph_pb2.TensorInfo(name=f"{name}:0", dtype=types_pb2.DT_FLOAT))
    return sig


def test_spotters_own_detector() -> None:
    info = describe_signature("demo", 3, signature({"images": (types_pb2.DT_UINT8, [-1, 320, 320, 3])}), 640)
    assert (info.kind, info.input_name, info.input_size, info.max_batch, info.version) == (
        "detector",
        "images",
        320,
        None,
        3,
    )
    assert info.outputs == tuple(sorted(DETECTOR_OUTPUTS))


def test_a_classifier() -> None:
    sig = signature({"images": (types_pb2.DT_UINT8, [-1, 224, 224, 3])}, ("probabilities",))
    assert describe_signature("c", 1, sig, 640).kind == "classifier"


def test_an_object_detection_api_export() -> None:
    info = describe_signature("odapi", 1, signature({"input_tensor": (types_pb2.DT_UINT8, [1, -1, -1, 3])}), 512)
    assert (info.kind, info.input_name, info.input_size, info.max_batch) == ("detector", "input_tensor", 512, 1)


@pytest.mark.parametrize(
    ("inputs", "outputs", "problem"),
    [
        ({"images": (types_pb2.DT_UINT8, [-1, 320, 240, 3])}, DETECTOR_OUTPUTS, "square"),
        ({"images": (types_pb2.DT_FLOAT, [-1, 320, 320, 3])}, DETECTOR_OUTPUTS, "uint8"),
        ({"images": (types_pb2.DT_UINT8, [-1, 320, 320])}, DETECTOR_OUTPUTS, "[batch, height, width, 3]"),
        ({"a": (types_pb2.DT_UINT8, [-1, 8, 8, 3]), "b": (types_pb2.DT_UINT8, [-1])}, DETECTOR_OUTPUTS, "not one"),
        ({"images": (types_pb2.DT_UINT8, [-1, 8, 8, 3])}, ("logits",), "neither"),
    ],
)
def test_what_cannot_be_served_says_why(inputs: dict, outputs: tuple[str, ...], problem: str) -> None:
    info = describe_signature("m", 1, signature(inputs, outputs), 640)
    assert info.kind == "unknown"
    assert info.problem is not None and problem in info.problem
