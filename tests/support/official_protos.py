"""The same TFS messages built from either set of stubs, for the byte-for-byte round-trip test.

:func:`build_messages` takes the proto modules as arguments, so one recipe builds the messages from Spotter's stubs
(``services.gen.tfs``, in the TensorFlow-free test process) and from ``tensorflow-serving-api``'s (here, run as a
subprocess, because one process can't hold both). Importing this module imports neither.

    python -m tests.support.official_protos < ours.json > official.json

reads ``{"name": "<base64 of our serialization>"}`` and prints, per message, the official serialization, whether our
bytes parse into a message equal to the official one, and the official re-serialization of our bytes.
"""

from __future__ import annotations

import base64
import json
import sys
from types import SimpleNamespace
from typing import Any

# A few bytes that are not valid UTF-8, to prove strings travel as bytes.
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\xff\xd9"


def _shape(proto: Any, dims: list[int]) -> None:
    for size in dims:
        proto.tensor_shape.dim.add().size = size


def _info(proto: Any, name: str, dtype: int, dims: list[int]) -> None:
    proto.name = name
    proto.dtype = dtype
    _shape(proto, dims)


def build_messages(pb: SimpleNamespace) -> dict[str, Any]:
    """The messages, built with ``pb``'s modules: ``predict_pb2``, ``get_model_metadata_pb2``,
    ``get_model_status_pb2``, ``model_management_pb2``, ``types_pb2``."""
    types = pb.types_pb2

    request = pb.predict_pb2.PredictRequest()
    request.model_spec.name = "demo"
    request.model_spec.version.value = 3
    request.model_spec.signature_name = "serving_default"
    images = request.inputs["images"]  # uint8 the way the gateway sends it: raw bytes in tensor_content
    images.dtype = types.DT_UINT8
    _shape(images, [2, 2, 2, 3])
    images.tensor_content = bytes(range(24))
    mask = request.inputs["mask"]  # uint8 in the typed field (int_val)
    mask.dtype = types.DT_UINT8
    _shape(mask, [4])
    mask.int_val.extend([0, 1, 254, 255])
    encoded = request.inputs["encoded"]
    encoded.dtype = types.DT_STRING
    _shape(encoded, [2])
    encoded.string_val.extend([PNG, JPEG])
    scale = request.inputs["scale"]
    scale.dtype = types.DT_FLOAT
    _shape(scale, [2])
    scale.float_val.extend([0.5, -1.25])
    request.output_filter.extend(["detection_boxes", "detection_scores"])

    labelled = pb.predict_pb2.PredictRequest()
    labelled.model_spec.name = "demo"
    labelled.model_spec.version_label = "stable"
    labelled.model_spec.signature_name = "labels"

    response = pb.predict_pb2.PredictResponse()
    response.model_spec.name = "demo"
    response.model_spec.version.value = 3
    response.model_spec.signature_name = "serving_default"
    boxes = response.outputs["detection_boxes"]
    boxes.dtype = types.DT_FLOAT
    _shape(boxes, [1, 2, 4])
    boxes.float_val.extend([0.1, 0.2, 0.3, 0.4, 0.0, 0.0, 1.0, 1.0])
    scores = response.outputs["detection_scores"]  # float in tensor_content (little-endian float32)
    scores.dtype = types.DT_FLOAT
    _shape(scores, [1, 2])
    scores.tensor_content = b"\x00\x00\x40\x3f\x00\x00\x80\x3e"
    names = response.outputs["names"]
    names.dtype = types.DT_STRING
    _shape(names, [2])
    names.string_val.extend([b"circle", "sqüare".encode()])
    ids = response.outputs["ids"]
    ids.dtype = types.DT_INT32
    _shape(ids, [2])
    ids.int_val.extend([1, 2])
    pixels = response.outputs["pixels"]
    pixels.dtype = types.DT_UINT8
    _shape(pixels, [3])
    pixels.int_val.extend([0, 128, 255])

    signature_map = pb.get_model_metadata_pb2.SignatureDefMap()
    serving = signature_map.signature_def["serving_default"]
    serving.method_name = "tensorflow/serving/predict"
    _info(serving.inputs["images"], "serving_default_images:0", types.DT_UINT8, [-1, 320, 320, 3])
    _info(serving.outputs["detection_boxes"], "StatefulPartitionedCall:0", types.DT_FLOAT, [-1, 100, 4])
    _info(serving.outputs["num_detections"], "StatefulPartitionedCall:3", types.DT_FLOAT, [-1])
    labels = signature_map.signature_def["labels"]
    labels.method_name = "tensorflow/serving/predict"
    _info(labels.outputs["names"], "StatefulPartitionedCall_1:1", types.DT_STRING, [7])
    init = signature_map.signature_def["__saved_model_init_op"]
    init.outputs["__saved_model_init_op"].name = "NoOp"
    init.outputs["__saved_model_init_op"].tensor_shape.unknown_rank = True
    metadata = pb.get_model_metadata_pb2.GetModelMetadataResponse()
    metadata.model_spec.name = "demo"
    metadata.model_spec.version.value = 3
    metadata.metadata["signature_def"].Pack(signature_map, deterministic=True)

    metadata_request = pb.get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    metadata_request.model_spec.name = "demo"

    status = pb.get_model_status_pb2.GetModelStatusResponse()
    available = status.model_version_status.add()
    available.version = 3
    available.state = pb.get_model_status_pb2.ModelVersionStatus.AVAILABLE
    failed = status.model_version_status.add()
    failed.version = 2
    failed.state = pb.get_model_status_pb2.ModelVersionStatus.END
    failed.status.error_code = 15  # DATA_LOSS
    failed.status.error_message = "Can't parse saved_model.pb as binary proto"

    status_request = pb.get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "demo"
    status_request.model_spec.version.value = 3

    # What a promotion sends (services/gateway/config_labels.py): the whole model list, labels moved.
    reload = pb.model_management_pb2.ReloadConfigRequest()
    entry = reload.config.model_config_list.config.add(
        name="demo", base_path="/models/demo", model_platform="tensorflow"
    )
    entry.model_version_policy.specific.versions.extend([2, 3])
    entry.version_labels["stable"] = 3
    entry.version_labels["shadow"] = 2
    reload.config.model_config_list.config.add(name="other", base_path="/models/other", model_platform="tensorflow")
    refused = pb.model_management_pb2.ReloadConfigResponse()
    refused.status.error_code = 9  # FAILED_PRECONDITION
    refused.status.error_message = "Request to assign label to version 4 of model demo, which is not available"

    return {
        "ReloadConfigRequest": reload,
        "ReloadConfigResponse": refused,
        "PredictRequest": request,
        "PredictRequest(label)": labelled,
        "PredictResponse": response,
        "GetModelMetadataRequest": metadata_request,
        "GetModelMetadataResponse": metadata,
        "GetModelStatusRequest": status_request,
        "GetModelStatusResponse": status,
    }


def serialize(messages: dict[str, Any]) -> dict[str, str]:
    """Deterministic serializations (map entries in key order), base64-encoded."""
    return {name: base64.b64encode(m.SerializeToString(deterministic=True)).decode() for name, m in messages.items()}


def official_modules() -> SimpleNamespace:
    from tensorflow.core.framework import types_pb2
    from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_management_pb2, predict_pb2

    return SimpleNamespace(
        model_management_pb2=model_management_pb2,
        predict_pb2=predict_pb2,
        get_model_metadata_pb2=get_model_metadata_pb2,
        get_model_status_pb2=get_model_status_pb2,
        types_pb2=types_pb2,
    )


def main() -> None:
    ours = {name: base64.b64decode(data) for name, data in json.load(sys.stdin).items()}
    official = build_messages(official_modules())
    parsed_equal: dict[str, bool] = {}
    reserialized: dict[str, Any] = {}
    for name, message in official.items():
        parsed = type(message)()
        parsed.ParseFromString(ours[name])
        parsed_equal[name] = parsed == message
        reserialized[name] = parsed
    json.dump(
        {"official": serialize(official), "parsed_equal": parsed_equal, "reserialized": serialize(reserialized)},
        sys.stdout,
    )


if __name__ == "__main__":
    main()
