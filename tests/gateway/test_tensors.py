"""NumPy <-> TensorProto with our stubs: raw tensor_content both ways, and every typed *_val field on the way back."""

from __future__ import annotations

import numpy as np
import pytest

from services.errors import UpstreamError
from services.gateway.tensors import encode_predict_request, shape_proto, to_ndarray, to_tensor_proto
from services.gen.tfs import predict_pb2, tensor_pb2, types_pb2


@pytest.mark.parametrize(
    "dtype",
    [
        "uint8",
        "int8",
        "int16",
        "uint16",
        "int32",
        "uint32",
        "int64",
        "uint64",
        "float16",
        "float32",
        "float64",
        "bool",
        "complex64",
        "complex128",
    ],
)
def test_numeric_arrays_round_trip_through_tensor_content(dtype: str) -> None:
    array = (np.arange(24).reshape(2, 3, 4) % 7).astype(dtype)
    proto = to_tensor_proto(array)
    assert proto.tensor_content == array.tobytes()
    back = to_ndarray(tensor_pb2.TensorProto.FromString(proto.SerializeToString()))
    assert back.dtype == array.dtype
    np.testing.assert_array_equal(back, array)


def test_an_image_batch_is_one_uint8_buffer() -> None:
    batch = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    proto = to_tensor_proto(batch)
    assert proto.dtype == types_pb2.DT_UINT8
    assert [d.size for d in proto.tensor_shape.dim] == [2, 8, 8, 3]
    assert len(proto.tensor_content) == batch.nbytes


def test_big_endian_input_is_sent_little_endian() -> None:
    array = np.array([1.5, -2.0], dtype=">f4")
    np.testing.assert_array_equal(to_ndarray(to_tensor_proto(array)), array)


def test_strings_round_trip_through_string_val() -> None:
    proto = to_tensor_proto(np.array([b"cat", b"dog"], dtype=object))
    assert proto.dtype == types_pb2.DT_STRING
    assert list(proto.string_val) == [b"cat", b"dog"]
    assert to_ndarray(proto).tolist() == [b"cat", b"dog"]
    assert list(to_tensor_proto(np.array(["a", "b"])).string_val) == [b"a", b"b"]


@pytest.mark.parametrize(
    ("dtype", "field", "values", "expected"),
    [
        (types_pb2.DT_FLOAT, "float_val", [0.5, 1.5], np.array([0.5, 1.5], np.float32)),
        (types_pb2.DT_DOUBLE, "double_val", [0.25, 2.0], np.array([0.25, 2.0], np.float64)),
        (types_pb2.DT_INT32, "int_val", [1, -2], np.array([1, -2], np.int32)),
        (types_pb2.DT_UINT8, "int_val", [7, 255], np.array([7, 255], np.uint8)),
        (types_pb2.DT_INT64, "int64_val", [2**40, -1], np.array([2**40, -1], np.int64)),
        (types_pb2.DT_BOOL, "bool_val", [True, False], np.array([True, False])),
        (types_pb2.DT_UINT32, "uint32_val", [2**31, 1], np.array([2**31, 1], np.uint32)),
        (types_pb2.DT_UINT64, "uint64_val", [2**63, 1], np.array([2**63, 1], np.uint64)),
        (types_pb2.DT_HALF, "half_val", [0x3C00, 0xC000], np.array([1.0, -2.0], np.float16)),
        (types_pb2.DT_BFLOAT16, "half_val", [0x3F80, 0x4040], np.array([1.0, 3.0], np.float32)),
        (types_pb2.DT_COMPLEX64, "scomplex_val", [1.0, 2.0, 3.0, -1.0], np.array([1 + 2j, 3 - 1j], np.complex64)),
    ],
)
def test_typed_value_fields_are_read(dtype: int, field: str, values: list, expected: np.ndarray) -> None:
    proto = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape_proto([2]))
    getattr(proto, field).extend(values)
    back = to_ndarray(proto)
    assert back.dtype == expected.dtype
    np.testing.assert_array_equal(back, expected)


def test_fewer_values_than_elements_repeat_the_last_one() -> None:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=shape_proto([2, 3]), float_val=[1.0, 2.0])
    np.testing.assert_array_equal(to_ndarray(proto), [[1, 2, 2], [2, 2, 2]])


def test_a_scalar_and_an_empty_tensor() -> None:
    scalar = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT32, int_val=[4])
    assert to_ndarray(scalar).shape == () and int(to_ndarray(scalar)) == 4
    empty = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=shape_proto([0, 4]))
    assert to_ndarray(empty).shape == (0, 4)


@pytest.mark.parametrize(
    "proto",
    [
        tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=shape_proto([3]), tensor_content=b"\0" * 8),
        tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=shape_proto([1]), float_val=[1.0, 2.0]),
        tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=shape_proto([2])),
        tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=shape_proto([-1]), float_val=[1.0]),
        tensor_pb2.TensorProto(dtype=types_pb2.DT_INVALID, tensor_shape=shape_proto([1]), tensor_content=b"x"),
    ],
    ids=["short-content", "too-many-values", "no-values", "open-shape", "unreadable-type"],
)
def test_malformed_tensors_are_upstream_errors(proto: tensor_pb2.TensorProto) -> None:
    with pytest.raises(UpstreamError):
        to_ndarray(proto)


@pytest.mark.parametrize(
    "inputs",
    [
        {"images": np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)},
        {"x": np.arange(12, dtype=">f4").reshape(3, 4)[:, ::2], "ids": np.zeros([1], np.int32)},  # strided, big-endian
        {"names": np.array([b"a", b"bc"], dtype=object), "empty": np.zeros((0, 3), np.float64)},
        {"long": np.ones(300_000, np.uint8)},  # multi-byte lengths
    ],
)
def test_encoded_predict_request_is_the_message_serialize_would_send(inputs: dict[str, np.ndarray]) -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "demo"
    request.model_spec.version.value = 3
    request.output_filter.append("detection_boxes")
    expected = predict_pb2.PredictRequest()
    expected.CopyFrom(request)
    for name, array in inputs.items():
        expected.inputs[name].CopyFrom(to_tensor_proto(array))

    decoded = predict_pb2.PredictRequest.FromString(encode_predict_request(request, inputs))

    assert decoded == expected
    for name, array in inputs.items():
        np.testing.assert_array_equal(to_ndarray(decoded.inputs[name]), array)


def test_encoding_refuses_a_dtype_tensorflow_lacks() -> None:
    with pytest.raises(TypeError):
        encode_predict_request(predict_pb2.PredictRequest(), {"t": np.array(["2026-01-01"], dtype="datetime64[D]")})
