"""NumPy arrays to and from ``tensorflow.TensorProto`` (our stubs), without TensorFlow.

Requests carry numeric tensors in ``tensor_content`` (no per-element work). On the hot path,
:func:`encode_predict_request` writes a ``PredictRequest``'s wire bytes with each input array's buffer copied once,
straight into the message: building a ``TensorProto`` from ``tobytes()`` and serializing the request would copy a
batch of canvases three to four times (``tobytes``, the protobuf field, ``CopyFrom``, ``SerializeToString``).

Responses are parsed whichever way the server filled them: ``tensor_content`` (what TFS does for numeric outputs)
or the typed ``*_val`` fields (strings always; other servers for small tensors), including TensorFlow's shorthand
where fewer values than elements are sent and the last one repeats.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from services.errors import UpstreamError
from services.gen.tfs import predict_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

# DataType -> the NumPy dtype of its values (little-endian: TensorFlow's tensor_content is host order, and every
# platform TFS runs on is little-endian).
_NUMPY_DTYPE: dict[int, np.dtype] = {
    types_pb2.DT_FLOAT: np.dtype("<f4"),
    types_pb2.DT_DOUBLE: np.dtype("<f8"),
    types_pb2.DT_INT32: np.dtype("<i4"),
    types_pb2.DT_UINT8: np.dtype("u1"),
    types_pb2.DT_INT16: np.dtype("<i2"),
    types_pb2.DT_INT8: np.dtype("i1"),
    types_pb2.DT_INT64: np.dtype("<i8"),
    types_pb2.DT_BOOL: np.dtype("?"),
    types_pb2.DT_UINT16: np.dtype("<u2"),
    types_pb2.DT_UINT32: np.dtype("<u4"),
    types_pb2.DT_UINT64: np.dtype("<u8"),
    types_pb2.DT_HALF: np.dtype("<f2"),
    types_pb2.DT_COMPLEX64: np.dtype("<c8"),
    types_pb2.DT_COMPLEX128: np.dtype("<c16"),
}
_DATA_TYPE: dict[np.dtype, int] = {dt.newbyteorder("="): code for code, dt in _NUMPY_DTYPE.items()}

# Which repeated field holds the values of each DataType when tensor_content is empty.
_VALUE_FIELD: dict[int, str] = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_INT16: "int_val",
    types_pb2.DT_INT8: "int_val",
    types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val",
    types_pb2.DT_HALF: "half_val",
    types_pb2.DT_BFLOAT16: "half_val",
    types_pb2.DT_COMPLEX64: "scomplex_val",
    types_pb2.DT_COMPLEX128: "dcomplex_val",
    types_pb2.DT_STRING: "string_val",
}


def shape_proto(shape: Sequence[int]) -> tensor_shape_pb2.TensorShapeProto:
    return tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(d)) for d in shape])


def shape_of(proto: tensor_shape_pb2.TensorShapeProto) -> tuple[int, ...] | None:
    """The dims of a shape (``-1`` for unknown ones), or None when even the rank is unknown."""
    if proto.unknown_rank:
        return None
    return tuple(int(d.size) for d in proto.dim)


def to_tensor_proto(array: np.ndarray | Sequence[bytes]) -> tensor_pb2.TensorProto:
    """A TensorProto holding ``array``: numeric arrays as raw ``tensor_content``, bytes/str arrays as ``string_val``.

    Raises:
        TypeError: for a dtype TensorFlow has no DataType for.
    """
    arr = np.asarray(array)
    if arr.dtype.kind in "SUO":
        values = [v if isinstance(v, bytes) else str(v).encode() for v in arr.reshape(-1).tolist()]
        return tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_shape=shape_proto(arr.shape), string_val=values)
    code: Any = _DATA_TYPE.get(arr.dtype.newbyteorder("="))
    if code is None:
        raise TypeError(f"no TensorFlow DataType for NumPy dtype {arr.dtype}")
    wire = arr.astype(_NUMPY_DTYPE[code], copy=False)
    return tensor_pb2.TensorProto(dtype=code, tensor_shape=shape_proto(arr.shape), tensor_content=wire.tobytes())


# Wire-format tags (field number << 3 | 2, "length-delimited") of the fields encode_predict_request writes:
# PredictRequest.inputs = 2, its map entry's key = 1 and value = 2, TensorProto.tensor_content = 4.
_INPUTS_TAG, _KEY_TAG, _VALUE_TAG, _CONTENT_TAG = b"\x12", b"\x0a", b"\x12", b"\x22"


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_predict_request(request: predict_pb2.PredictRequest, inputs: Mapping[str, np.ndarray]) -> bytes:
    """The wire bytes of ``request`` with ``inputs`` added to its ``inputs`` map: what setting each input with
    :func:`to_tensor_proto` and calling ``SerializeToString()`` gives (the same message when parsed), but each
    numeric array's buffer is copied once, into the result. String tensors go through :func:`to_tensor_proto`.

    Raises:
        TypeError: for a dtype TensorFlow has no DataType for.
    """
    parts: list[bytes | memoryview] = [request.SerializeToString()]
    for name, array in inputs.items():
        arr = np.asarray(array)
        code: Any = _DATA_TYPE.get(arr.dtype.newbyteorder("=")) if arr.dtype.kind not in "SUO" else None
        if code is None:
            entry = predict_pb2.PredictRequest()
            entry.inputs[name].CopyFrom(to_tensor_proto(arr))  # strings, or the TypeError
            parts.append(entry.SerializeToString())
            continue
        wire = np.ascontiguousarray(arr, dtype=_NUMPY_DTYPE[code])
        content = wire.reshape(-1).view(np.uint8).data  # a memoryview of the array's own buffer
        header = tensor_pb2.TensorProto(dtype=code, tensor_shape=shape_proto(arr.shape)).SerializeToString()
        tensor = header + _CONTENT_TAG + _varint(content.nbytes)
        tensor_length = len(tensor) + content.nbytes
        key = name.encode()
        entry_head = _KEY_TAG + _varint(len(key)) + key + _VALUE_TAG + _varint(tensor_length)
        parts += [_INPUTS_TAG, _varint(len(entry_head) + tensor_length), entry_head, tensor, content]
    return b"".join(parts)


def to_ndarray(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """The NumPy array a TensorProto holds (strings as an ``object`` array of ``bytes``).

    Raises:
        UpstreamError: when the tensor is malformed (its values do not fill its shape) or of a type we cannot read.
    """
    shape = shape_of(proto.tensor_shape)
    if shape is None or any(d < 0 for d in shape):
        raise UpstreamError(f"the model server answered a tensor without a full shape ({shape})")
    size = int(np.prod(shape, dtype=np.int64))
    dtype = proto.dtype
    if dtype == types_pb2.DT_STRING:
        return _fill(np.array(list(proto.string_val), dtype=object), shape, size)
    if proto.tensor_content:
        if dtype == types_pb2.DT_BFLOAT16:
            return _bfloat16(np.frombuffer(proto.tensor_content, dtype="<u2")).reshape(shape)
        np_dtype = _NUMPY_DTYPE.get(dtype)
        if np_dtype is None:
            raise UpstreamError(f"the model server answered a tensor of unsupported type {_type_name(dtype)}")
        flat = np.frombuffer(proto.tensor_content, dtype=np_dtype)
        if flat.size != size:
            raise UpstreamError(f"tensor_content holds {flat.size} values for shape {list(shape)}")
        return flat.reshape(shape)
    field = _VALUE_FIELD.get(dtype)
    if field is None:
        raise UpstreamError(f"the model server answered a tensor of unsupported type {_type_name(dtype)}")
    raw = list(getattr(proto, field))
    values: np.ndarray
    if dtype == types_pb2.DT_HALF:
        values = np.array(raw, dtype="<u2").view("<f2")
    elif dtype == types_pb2.DT_BFLOAT16:
        values = _bfloat16(np.array(raw, dtype="<u2"))
    elif dtype in (types_pb2.DT_COMPLEX64, types_pb2.DT_COMPLEX128):
        # Complex values are sent as (real, imaginary) pairs.
        pairs = np.array(raw, dtype=np.float64).reshape(-1, 2)
        values = (pairs[:, 0] + 1j * pairs[:, 1]).astype(_NUMPY_DTYPE[dtype])
    else:
        values = np.array(raw, dtype=_NUMPY_DTYPE[dtype])
    return _fill(values, shape, size)


def _fill(values: np.ndarray, shape: tuple[int, ...], size: int) -> np.ndarray:
    """Reshape ``values`` to ``shape``; TensorFlow may send fewer values, the last one standing for the rest."""
    if values.size == size:
        return values.reshape(shape)
    if values.size == 0 or values.size > size:
        raise UpstreamError(f"a tensor of shape {list(shape)} came with {values.size} values")
    padded = np.concatenate([values, np.repeat(values[-1:], size - values.size)])
    return padded.reshape(shape)


def _bfloat16(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns as float32 (bfloat16 is the top half of a float32)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _type_name(dtype: int) -> str:
    try:
        return str(types_pb2.DataType.Name(dtype))
    except ValueError:
        return str(dtype)
