"""``TensorProto`` <-> numpy, the way TensorFlow Serving reads requests and writes responses.

Requests: ``tensor_content`` is read in place (``np.frombuffer``, no copy); typed fields (``float_val``...) go
through ``tf.make_ndarray``, which also pads a short field with its last value, as TF's ``Tensor::FromProto`` does.
Responses: TFS writes outputs with ``Tensor::AsProtoField``, i.e. the typed repeated fields (``float_val``,
``int_val``, ``string_val``...), not ``tensor_content``; we do the same so clients see what TFS sends.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

# TF's ProtoHelper<T>: the repeated field each dtype's values go to.
_FIELDS: dict[int, str] = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_INT16: "int_val",
    types_pb2.DT_INT8: "int_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val",
    types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_STRING: "string_val",
}
_HALF = {types_pb2.DT_HALF: np.float16, types_pb2.DT_BFLOAT16: None}


def dtype_name(dtype: int) -> str:
    """TF's short name of a ``DataType`` (``uint8``), as TF's own error messages print it."""
    try:
        return str(tf.as_dtype(dtype).name)
    except TypeError:
        return types_pb2.DataType.Name(dtype) if dtype in types_pb2.DataType.values() else str(dtype)


def to_ndarray(proto: tensor_pb2.TensorProto) -> np.ndarray[Any, Any]:
    """The numpy array a request tensor holds.

    Raises:
        ValueError, TypeError: the proto is inconsistent (content size vs. shape, unknown dtype).
    """
    if proto.tensor_content and proto.dtype != types_pb2.DT_STRING:
        shape = [dim.size for dim in proto.tensor_shape.dim]
        dtype = tf.as_dtype(proto.dtype).as_numpy_dtype
        # Read-only view on the request's bytes; TF copies it into its own tensor once, when the model runs.
        return np.frombuffer(proto.tensor_content, dtype=dtype).reshape(shape)
    return np.asarray(tf.make_ndarray(proto))


def fill_proto(array: np.ndarray[Any, Any], dtype: int, proto: tensor_pb2.TensorProto) -> None:
    """Write ``array`` into ``proto`` like TF's ``Tensor::AsProtoField`` (dtype, shape, typed values)."""
    proto.dtype = dtype
    for size in array.shape:
        proto.tensor_shape.dim.add().size = int(size)
    field = _FIELDS.get(dtype)
    if field is not None:
        values = array.ravel()
        if dtype == types_pb2.DT_STRING:
            getattr(proto, field).extend(v if isinstance(v, bytes) else str(v).encode() for v in values)
        else:
            getattr(proto, field).extend(values.tolist())
    elif dtype in _HALF:
        proto.half_val.extend(array.ravel().view(np.uint16).tolist())
    else:
        # Rare dtypes (complex, quantized...): TF's own encoding.
        proto.CopyFrom(tf.make_tensor_proto(array, dtype=tf.as_dtype(dtype)))
