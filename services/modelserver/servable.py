"""One loaded model version: its signatures, its TFS metadata, and Predict.

Loading takes TFS's path (:mod:`services.modelserver.bundle`): the ``serve`` meta graph in a session, restored by its
saver, so TF1 exports (TF 1.x, TF Object Detection API) and TF2 ones load alike. The metadata is TFS's: the signature
defs of that meta graph, read from ``saved_model.pb`` itself, so dtypes and shapes (``-1`` for dynamic dimensions)
are exactly what TFS reports. Request checks and their messages follow TFS's ``predict_util.cc``: input and output
aliases are checked here, dtypes and shapes are left to the runtime, as TFS leaves them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import message, text_format
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2

from services.modelserver.batching import BatchingBundle, BatchingParameters
from services.modelserver.bundle import UnservableOnTfsError, load_bundle
from services.modelserver.metrics import METRICS
from services.modelserver.status import (
    ServingError,
    code_from_number,
    failed_precondition,
    internal,
    invalid_argument,
)
from services.modelserver.tensors import fill_proto, to_ndarray

log = logging.getLogger(__name__)

DEFAULT_SIGNATURE = "serving_default"
SERVE_TAG = "serve"
PREDICT_METHODS = ("tensorflow/serving/predict", "tensorflow/serving/classify", "tensorflow/serving/regress")
RUNTIME = "TF1"  # TFS's label for the classic TensorFlow runtime (its other one is "TFRT")

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Signature:
    """A signature def, with what a run needs precomputed: input dtypes and dims, and the tensors' names."""

    name: str
    method_name: str
    inputs: Mapping[str, tuple[int, tuple[int, ...] | None]]
    """alias -> (DataType, dims with -1 for dynamic ones, or None for an unknown rank)"""
    outputs: Mapping[str, int]
    input_tensors: Mapping[str, str]
    output_tensors: Mapping[str, str]


def read_signature_defs(path: Path) -> meta_graph_pb2.MetaGraphDef:
    """The ``serve`` meta graph of the SavedModel in ``path`` (its signature defs are TFS's metadata).

    Raises:
        ServingError: DATA_LOSS when ``saved_model.pb`` can't be parsed, NOT_FOUND without a ``serve`` meta graph.
    """
    saved_model = saved_model_pb2.SavedModel()
    binary, text = path / "saved_model.pb", path / "saved_model.pbtxt"
    try:
        if binary.is_file():
            saved_model.ParseFromString(binary.read_bytes())
        else:
            text_format.Parse(text.read_text(), saved_model)
    except (OSError, message.DecodeError, text_format.ParseError) as exc:
        raise ServingError(grpc.StatusCode.DATA_LOSS, f"Can't parse {binary} as binary proto: {exc}") from exc
    for meta_graph in saved_model.meta_graphs:
        if set(meta_graph.meta_info_def.tags) == {SERVE_TAG}:
            return meta_graph
    raise ServingError(
        grpc.StatusCode.NOT_FOUND,
        f"Could not find meta graph def matching supplied tags: {{ {SERVE_TAG} }}. To inspect available tag-sets in"
        " the SavedModel, please use the SavedModel CLI: `saved_model_cli`",
    )


def _dims(info: Any) -> tuple[int, ...] | None:
    shape = info.tensor_shape
    return None if shape.unknown_rank else tuple(int(d.size) for d in shape.dim)


class Servable:
    """A loaded, servable model version (thread-safe: TF functions may be called concurrently)."""

    def __init__(self, name: str, version: int, path: Path, bundle: Any, meta_graph: meta_graph_pb2.MetaGraphDef):
        self.name = name
        self.version = version
        self.path = path
        self.bundle = bundle  # a SessionBundle (or anything with its ``run``)
        self.signature_defs = meta_graph.signature_def
        self.signatures: dict[str, Signature] = {
            key: Signature(
                name=key,
                method_name=sig.method_name,
                inputs={alias: (info.dtype, _dims(info)) for alias, info in sig.inputs.items()},
                outputs={alias: info.dtype for alias, info in sig.outputs.items()},
                input_tensors={alias: info.name for alias, info in sig.inputs.items()},
                output_tensors={alias: info.name for alias, info in sig.outputs.items()},
            )
            for key, sig in meta_graph.signature_def.items()
        }
        # GetModelMetadata's answer never changes for a version: build it once.
        self.metadata = get_model_metadata_pb2.GetModelMetadataResponse()
        self.metadata.model_spec.name = name
        self.metadata.model_spec.version.value = version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, sig in meta_graph.signature_def.items():
            signature_map.signature_def[key].CopyFrom(sig)
        self.metadata.metadata["signature_def"].Pack(signature_map)

    def __repr__(self) -> str:
        return f"Servable({self.name!r}, {self.version})"

    def signature(self, name: str) -> Signature:
        """The signature Predict runs (``serving_default`` when ``name`` is empty).

        Raises:
            ServingError: FAILED_PRECONDITION for an unknown name (TFS's answer to Predict).
        """
        key = name or DEFAULT_SIGNATURE
        signature = self.signatures.get(key)
        if signature is None:
            raise failed_precondition(f'Serving signature key "{key}" not found.')
        return signature

    def predict(self, request: predict_pb2.PredictRequest, response: predict_pb2.PredictResponse) -> None:
        """TFS's Predict on this version: check the request against the signature, run it, fill ``response``."""
        signature = self.signature(request.model_spec.signature_name)
        response.model_spec.name = self.name
        response.model_spec.version.value = self.version
        response.model_spec.signature_name = signature.name
        _check_input_names(signature, request.inputs.keys())
        inputs: dict[str, Array] = {}
        for alias, proto in request.inputs.items():
            try:
                inputs[alias] = to_ndarray(proto)
            except (ValueError, TypeError) as exc:
                raise invalid_argument(f"tensor parsing error: {alias}") from exc
        for alias, (dtype, array) in self.run(signature, inputs, request.output_filter).items():
            fill_proto(array, dtype, response.outputs[alias])

    def run(
        self, signature: Signature, inputs: Mapping[str, Array], output_filter: Sequence[str] = ()
    ) -> dict[str, tuple[int, Array]]:
        """Run ``signature`` on numpy inputs; returns alias -> (DataType, array).

        Raises:
            ServingError: INVALID_ARGUMENT for missing or extra inputs and unknown output names; the runtime's own
                code and message when it refuses an input (dtype, shape) or the model fails.
        """
        _check_method(signature, PREDICT_METHODS)
        _check_input_names(signature, inputs.keys())
        wanted = _check_output_filter(signature, output_filter)
        aliases = [alias for alias in signature.outputs if wanted is None or alias in wanted]
        feeds = {signature.input_tensors[alias]: array for alias, array in inputs.items()}
        values = self.run_tensors(feeds, [signature.output_tensors[alias] for alias in aliases], "Predict")
        return {alias: (signature.outputs[alias], value) for alias, value in zip(aliases, values, strict=True)}

    def run_tensors(self, feeds: Mapping[str, Array], fetches: Sequence[str], api: str) -> list[Array]:
        """Run the session by tensor names (TFS's ``Session::Run``), counting the time as ``api``'s runtime."""
        start = time.perf_counter()
        try:
            return [np.asarray(value) for value in self.bundle.run(feeds, fetches)]
        except tf.errors.OpError as exc:
            raise ServingError(code_from_number(exc.error_code), exc.message) from exc
        except (TypeError, ValueError) as exc:
            raise invalid_argument(str(exc).split("\n", 1)[0]) from exc
        finally:
            METRICS.runtime_latency.observe(self.name, api, RUNTIME, value=(time.perf_counter() - start) * 1e6)


def _check_method(signature: Signature, methods: Sequence[str]) -> None:
    if signature.method_name not in methods:
        raise internal(
            "Expected prediction signature method_name to be one of {"
            + ", ".join(methods)
            + f"}}. Was: {signature.method_name}"
        )


def _check_input_names(signature: Signature, sent: Any) -> None:
    sent_names, expected = set(sent), set(signature.inputs)
    if len(sent_names) != len(expected):
        raise invalid_argument(
            f"input size does not match signature: {len(sent_names)}!={len(expected)} "
            f"len({{{','.join(sorted(sent_names))}}}) != len({{{','.join(sorted(expected))}}}). "
            f"Sent extra: {{{','.join(sorted(sent_names - expected))}}}. "
            f"Missing but required: {{{','.join(sorted(expected - sent_names))}}}."
        )
    unknown = sorted(sent_names - expected)
    if unknown:
        raise invalid_argument(
            f"input tensor alias not found in signature: {unknown[0]}. "
            f"Inputs expected to be in the set {{{','.join(sorted(expected))}}}."
        )


def _check_output_filter(signature: Signature, output_filter: Sequence[str]) -> set[str] | None:
    if not output_filter:
        return None
    seen: set[str] = set()
    for alias in output_filter:
        if alias not in signature.outputs:
            raise invalid_argument(
                f"output tensor alias not found in signature: {alias} "
                f"Outputs expected to be in the set {{{','.join(sorted(signature.outputs))}}}."
            )
        if alias in seen:
            raise invalid_argument(f"duplicate output tensor alias: {alias}")
        seen.add(alias)
    return seen


def restore_servable(
    name: str,
    version: int,
    path: Path,
    *,
    strict_tfs_loading: bool = True,
    batching: tuple[BatchingParameters, threading.Semaphore] | None = None,
) -> Servable:
    """Restore one version (TF2 or TF1 SavedModel), not yet warmed up (that is
    :func:`services.modelserver.warmup.load_servable`); raises ServingError on failure.

    ``strict_tfs_loading`` (the default) fails a version TFS could load but not run (see :func:`bundle.load_bundle`);
    ``False`` serves it through the object-graph fallback. With ``batching`` (parameters and the shared run slots), runs
    are batched across requests (warmup included, as in TFS).
    """
    start = time.perf_counter()
    try:
        meta_graph = read_signature_defs(path)
        bundle = load_bundle(path, meta_graph, strict=strict_tfs_loading)
        if batching is not None:
            bundle = BatchingBundle(bundle, *batching)
    except UnservableOnTfsError as exc:
        METRICS.load_attempt_count.inc(str(path), "fail")
        raise failed_precondition(str(exc)) from exc
    except ServingError:
        METRICS.load_attempt_count.inc(str(path), "fail")
        raise
    except tf.errors.OpError as exc:
        METRICS.load_attempt_count.inc(str(path), "fail")
        raise ServingError(code_from_number(exc.error_code), exc.message) from exc
    except Exception as exc:
        METRICS.load_attempt_count.inc(str(path), "fail")
        raise ServingError(grpc.StatusCode.UNKNOWN, f"{type(exc).__name__}: {exc}") from exc
    elapsed_us = int((time.perf_counter() - start) * 1e6)
    METRICS.load_attempt_count.inc(str(path), "success")
    METRICS.load_latency.inc(str(path), amount=elapsed_us)
    servable = Servable(name, version, path, bundle, meta_graph)
    log.info(
        "Restored SavedModel for servable version {name: %s version: %d} in %.0f ms (signatures: %s)",
        name,
        version,
        elapsed_us / 1000,
        ", ".join(sorted(servable.signatures)),
    )
    return servable
