"""TFS's JSON predict format (``json_tensor.cc``): ``instances`` (row) or ``inputs`` (columnar) in,
``predictions`` or ``outputs`` back, ``{"b64": ...}`` for bytes.

Rules kept from TFS: the row format batches one value (or one object of named values) per instance; a plain list is
allowed only when the signature has one input; strings are UTF-8 text or ``{"b64": "..."}``; an output whose alias
ends in ``_bytes`` is written as ``{"b64": ...}``; a float32 is written with its shortest round-tripping decimal
(``0.1``, not ``0.10000000149011612``), whole numbers with ``.0``, and NaN/Infinity as bare tokens. Error messages
follow TFS's wording.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from tensorflow.core.framework import types_pb2

from services.modelserver.status import invalid_argument
from services.modelserver.tensors import dtype_name

Format = Literal["row", "columnar"]
Array = np.ndarray[Any, Any]
_MAX_QUOTE = 200  # TFS quotes the offending JSON in errors; ours is cut so an image doesn't fill the message

_FLOATS: dict[int, type[np.floating[Any]]] = {
    types_pb2.DT_FLOAT: np.float32,
    types_pb2.DT_DOUBLE: np.float64,
    types_pb2.DT_HALF: np.float16,
}
# The largest integer each float type holds exactly (TFS's IsLosslessDecimal).
_EXACT_INT = {types_pb2.DT_FLOAT: 2**24 - 1, types_pb2.DT_DOUBLE: 2**53 - 1, types_pb2.DT_HALF: 2**11 - 1}
_INTS: dict[int, type[np.integer[Any]]] = {
    types_pb2.DT_INT8: np.int8,
    types_pb2.DT_INT16: np.int16,
    types_pb2.DT_INT32: np.int32,
    types_pb2.DT_INT64: np.int64,
    types_pb2.DT_UINT8: np.uint8,
    types_pb2.DT_UINT16: np.uint16,
    types_pb2.DT_UINT32: np.uint32,
    types_pb2.DT_UINT64: np.uint64,
}


def quote(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= _MAX_QUOTE else text[:_MAX_QUOTE] + "..."


def json_type(value: Any) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def _type_error(value: Any, dtype: int) -> Exception:
    return invalid_argument(
        f"JSON Value: {quote(value)} Type: {json_type(value)} is not of expected type: {dtype_name(dtype)}"
    )


def is_b64(value: Any) -> bool:
    """``{"b64": "<base64>"}`` and nothing else."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def parse_document(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object (NaN and Infinity allowed, as TFS's parser allows them)."""
    if not body:
        raise invalid_argument("JSON Parse error: The document is empty")
    try:
        document = json.loads(body)
    except UnicodeDecodeError as exc:
        raise invalid_argument(f"JSON Parse error: Invalid encoding in string. at offset: {exc.start}") from exc
    except json.JSONDecodeError as exc:
        raise invalid_argument(f"JSON Parse error: {exc.msg} at offset: {exc.pos}") from exc
    if not isinstance(document, dict):
        raise invalid_argument(f"JSON Value: {quote(document)} Is not object")
    return document


def signature_name(document: Mapping[str, Any]) -> str:
    """The optional ``signature_name`` ("" when absent)."""
    name = document.get("signature_name", "")
    if not isinstance(name, str):
        raise invalid_argument(
            f"JSON Value: {quote(document)} not formatted correctly. 'signature_name' key must be a string value."
        )
    return name


def dense_shape(value: Any) -> list[int]:
    """A nested list's shape, read along first elements (TFS's ``GetDenseTensorShape``)."""
    shape: list[int] = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _check_dense(value: Any, shape: list[int], level: int = 0) -> None:
    """Raise TFS's error for a ragged or mis-nested value (slow path, only used to explain a failure)."""
    if not isinstance(value, list):
        if level != len(shape):
            raise invalid_argument(
                f"JSON Value: {quote(value)} found at incorrect level: {level + 1} in the JSON DOM. "
                f"Expected at level: {len(shape)}"
            )
        return
    if level >= len(shape):
        raise invalid_argument(f"Encountered list at unexpected level: {level} expected < {len(shape)}")
    if len(value) != shape[level]:
        raise invalid_argument(
            f"Encountered list at unexpected size: {len(value)} at level: {level} expected size: {shape[level]}"
        )
    for item in value:
        _check_dense(item, shape, level + 1)


def _strings(value: Any, dtype: int) -> Any:
    if isinstance(value, list):
        return [_strings(item, dtype) for item in value]
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict):
        if not is_b64(value):
            raise invalid_argument(f"JSON Value: {quote(value)} not formatted correctly for base64 data")
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise invalid_argument("Unable to base64 decode") from exc
    raise _type_error(value, dtype)


def to_array(value: Any, dtype: int) -> Array:
    """A JSON value (scalar or nested lists) as an array of the signature's dtype."""
    shape = dense_shape(value)
    if dtype == types_pb2.DT_STRING:
        _check_dense(value, shape)
        converted = _strings(value, dtype)
        strings = np.empty(shape, dtype=object)
        if shape:
            strings.reshape(-1)[:] = list(_flatten(converted))
        else:
            strings[()] = converted
        return strings
    array: Array | None
    try:
        array = np.array(value)
    except (ValueError, OverflowError):
        array = None
    if array is None or array.dtype == object or list(array.shape) != shape:
        _check_dense(value, shape)
        raise _type_error(_first_leaf(value), dtype)
    if array.size == 0:
        return np.empty(shape, dtype=_FLOATS.get(dtype) or _INTS.get(dtype) or bool)
    kind = array.dtype.kind
    if dtype in _FLOATS:
        if kind not in "iuf":
            raise _type_error(_first_of_kind(array, "bU"), dtype)
        if kind in "iu" and np.abs(array).max() > _EXACT_INT[dtype]:
            raise invalid_argument(
                f"Cannot convert JSON value: {np.abs(array).max()} to {dtype_name(dtype)} without loss of precision."
            )
        if dtype == types_pb2.DT_FLOAT and kind == "f":
            finite = array[np.isfinite(array)]
            if finite.size and np.abs(finite).max() > np.finfo(np.float32).max:
                raise invalid_argument(
                    f"Cannot convert JSON value: {np.abs(finite).max()} to float without loss of precision."
                )
        return array.astype(_FLOATS[dtype])
    if dtype in _INTS:
        if kind not in "iu":
            raise _type_error(_first_of_kind(array, "bfU"), dtype)
        info = np.iinfo(_INTS[dtype])
        if array.min() < info.min or array.max() > info.max:
            bad = array.max() if array.max() > info.max else array.min()
            raise _type_error(int(bad), dtype)
        return array.astype(_INTS[dtype])
    if dtype == types_pb2.DT_BOOL:
        if kind != "b":
            raise _type_error(_first_of_kind(array, "iufU"), dtype)
        return array
    raise invalid_argument(f"Conversion of JSON Value: {quote(value)} to type: {dtype_name(dtype)} is not supported")


def _flatten(value: Any) -> Any:
    if isinstance(value, list):
        for item in value:
            yield from _flatten(item)
    else:
        yield value


def _first_leaf(value: Any) -> Any:
    for leaf in _flatten(value):
        if not isinstance(leaf, (int, float)) or isinstance(leaf, bool):
            return leaf
    return next(iter(_flatten(value)), value)


def _first_of_kind(array: Array, kinds: str) -> Any:
    return array.ravel()[0].item() if array.dtype.kind in kinds else array.ravel()[0]


def inputs_from_json(
    document: Mapping[str, Any], specs: Mapping[str, tuple[int, Any]]
) -> tuple[Format, dict[str, Array]]:
    """The request's tensors, from ``instances`` (row format) or ``inputs`` (columnar format).

    Args:
        document: the parsed request body.
        specs: the signature's inputs, alias -> (DataType, dims).
    """
    if "instances" in document and "inputs" in document:
        raise invalid_argument(
            f"JSON Value: {quote(document)} Not formatted correctly expecting only one of 'inputs' or 'instances' "
            "keys to exist "
        )
    if "instances" in document:
        return "row", _from_instances(document, specs)
    if "inputs" in document:
        return "columnar", _from_inputs(document["inputs"], specs)
    raise invalid_argument("Missing 'inputs' or 'instances' key")


def _named(value: Any) -> bool:
    return isinstance(value, dict) and not is_b64(value)


def _from_instances(document: Mapping[str, Any], specs: Mapping[str, tuple[int, Any]]) -> dict[str, Array]:
    instances = document["instances"]
    if not isinstance(instances, list):
        raise invalid_argument(f"JSON Value: {quote(document)} Excepting 'instances' to be an list/array")
    if not instances:
        raise invalid_argument(f"JSON Value: {quote(document)} No values in 'instances' array")
    if not _named(instances[0]):
        if len(specs) > 1:
            raise invalid_argument(
                "instances is a plain list, but expecting list of objects as multiple input tensors required as "
                "per tensorinfo_map"
            )
        for index, item in enumerate(instances):
            if _named(item):
                raise invalid_argument(f"Expecting value/list but got object at item {index} of input list")
        (alias, (dtype, _)), *_ = specs.items()
        return {alias: _batched(instances, dtype)}
    names = sorted(specs)
    for index, item in enumerate(instances):
        if not _named(item):
            raise invalid_argument(f"Expecting object but got list at item {index} of input list")
        if sorted(item) != names:
            raise invalid_argument(
                f"Failed to process element: {index} of 'instances' list. JSON object: {quote(item)} keys must be "
                f"equal to: {','.join(names)}"
            )
    return {alias: _batched([item[alias] for item in instances], dtype) for alias, (dtype, _) in specs.items()}


def _batched(values: list[Any], dtype: int) -> Array:
    """Stack one value per instance; every instance must have the first one's shape."""
    first = dense_shape(values[0])
    for index, value in enumerate(values):
        shape = dense_shape(value)
        if shape != first:
            raise invalid_argument(
                f"Failed to process element: {index} of 'instances' list. Error: Expecting shape "
                f"[{','.join(map(str, first))}] but got: [{','.join(map(str, shape))}]"
            )
    return to_array(values, dtype)


def _from_inputs(value: Any, specs: Mapping[str, tuple[int, Any]]) -> dict[str, Array]:
    if not _named(value):
        if len(specs) > 1:
            raise invalid_argument(
                "inputs is a plain value/list, but expecting an object as multiple input tensors required as per "
                "tensorinfo_map"
            )
        (alias, (dtype, _)), *_ = specs.items()
        return {alias: to_array(value, dtype)}
    arrays: dict[str, Array] = {}
    for alias, (dtype, _) in specs.items():
        if alias not in value:
            raise invalid_argument(f"Missing named input: {alias} in 'inputs' object.")
        arrays[alias] = to_array(value[alias], dtype)
    return arrays


def _values(alias: str, dtype: int, array: Array) -> Any:
    """An output as nested Python lists (or a scalar) ready for ``json.dumps``."""
    leaves: list[Any]
    if dtype == types_pb2.DT_STRING:
        if alias.endswith("_bytes"):
            leaves = [{"b64": base64.b64encode(bytes(v)).decode("ascii")} for v in array.ravel()]
        else:
            leaves = [bytes(v).decode("utf-8", errors="replace") for v in array.ravel()]
    elif array.dtype in (np.float32, np.float16):
        # The shortest decimal that reads back as the same float32, like TFS's WriteDecimal.
        leaves = [float(text) for text in array.astype(np.float32).ravel().astype(str)]
    else:
        return array.tolist()
    if not array.shape:
        return leaves[0]
    nested = np.empty(len(leaves), dtype=object)
    nested[:] = leaves
    return nested.reshape(array.shape).tolist()


def outputs_to_json(outputs: Mapping[str, tuple[int, Array]], fmt: Format) -> str:
    """``{"predictions": [...]}`` (row format) or ``{"outputs": ...}`` (columnar), as TFS writes them."""
    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    if fmt == "columnar":
        if len(names) == 1:
            body: Any = _values(names[0], *outputs[names[0]])
        else:
            body = {name: _values(name, *outputs[name]) for name in names}
        return json.dumps({"outputs": body})
    batch = -1
    for name in names:
        array = outputs[name][1]
        if array.ndim == 0:
            raise invalid_argument(f"Tensor name: {name} has no shape information ")
        if batch >= 0 and array.shape[0] != batch:
            raise invalid_argument(
                f"Tensor name: {name} has inconsistent batch size: {array.shape[0]} expecting: {batch}"
            )
        batch = array.shape[0]
    columns = {name: _values(name, *outputs[name]) for name in names}
    if len(names) == 1:
        predictions: list[Any] = columns[names[0]]
    else:
        predictions = [{name: columns[name][i] for name in names} for i in range(batch)]
    return json.dumps({"predictions": predictions})
