"""The instant upstream: a gRPC server that speaks the TFS calls the gateway makes and answers each at once from a
recording, without running a model. In front of it, the gateway's own work is all that costs CPU, so a bench row
against it measures the gateway's ceiling (``benchmarks.gateway_ceiling``).

Two steps, each a command:

- ``record``: start the real embedded model server on a model version once, ask it what the gateway asks
  (``GetModelStatus``, ``GetModelMetadata``, the ``labels`` signature) and run ``serving_default`` on the example
  images' canvases (letterboxed by ``services.vision``, as the gateway sends them); save the serialized answers and
  the model server's idle RSS as one JSON file.
- ``serve``: load that file and answer on a port. A ``Predict`` of ``B`` images gets the recorded outputs' rows
  ``0, 1, ..., B - 1`` (cycling through the recorded images), so every answer has the batch's size and the real
  model's boxes, scores and classes. Answers are built once per batch size and kept.

Only the calls the gateway makes are served; any other model or signature is ``NOT_FOUND``, as TFS says it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import grpc
import numpy as np
import psutil
import typer

from services.gateway.tensors import to_ndarray, to_tensor_proto
from services.gen.tfs import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    meta_graph_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

logger = logging.getLogger(__name__)
SERVING_DEFAULT = "serving_default"
_MAX_MESSAGE = 256 * 1024 * 1024
_OPTIONS = [("grpc.max_send_message_length", _MAX_MESSAGE), ("grpc.max_receive_message_length", _MAX_MESSAGE)]


def _b64(message: Any) -> str:
    return base64.b64encode(message.SerializeToString()).decode("ascii")


def _spec(request: Any, name: str, version: int, signature: str = "") -> None:
    request.model_spec.name = name
    request.model_spec.version.value = version
    if signature:
        request.model_spec.signature_name = signature


def record_from(target: str, model: str, version: int, images_for: Callable[[int], np.ndarray]) -> dict[str, Any]:
    """Ask a running model server (``host:port``) what the gateway asks, and return the answers, serialized;
    ``images_for(S)`` gives the canvases to run ``serving_default`` on, for the model's input size ``S``."""
    with grpc.insecure_channel(target, options=_OPTIONS) as channel:
        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)  # type: ignore[no-untyped-call]
        models = model_service_pb2_grpc.ModelServiceStub(channel)  # type: ignore[no-untyped-call]
        status_request = get_model_status_pb2.GetModelStatusRequest()
        status_request.model_spec.name = model
        status = models.GetModelStatus(status_request, timeout=30.0)
        meta_request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        _spec(meta_request, model, version)
        metadata = predict.GetModelMetadata(meta_request, timeout=30.0)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        metadata.metadata["signature_def"].Unpack(signatures)
        serving = signatures.signature_def[SERVING_DEFAULT]
        input_tensor = next(iter(serving.inputs.values()))
        images = images_for(int(input_tensor.tensor_shape.dim[1].size))
        run = predict_pb2.PredictRequest()
        _spec(run, model, version, SERVING_DEFAULT)
        run.inputs[next(iter(serving.inputs))].CopyFrom(to_tensor_proto(images))
        outputs = predict.Predict(run, timeout=120.0)
        recorded: dict[str, Any] = {
            "model": model,
            "version": version,
            "images": len(images),
            "input_size": int(images.shape[1]),
            "status": _b64(status),
            "metadata": _b64(metadata),
            "predict": _b64(outputs),
        }
        labels = signatures.signature_def.get("labels")
        if labels is not None:
            recorded["labels"] = _b64(predict.Predict(_labels_request(model, version, labels), timeout=30.0))
    return recorded


def _labels_request(model: str, version: int, signature: meta_graph_pb2.SignatureDef) -> predict_pb2.PredictRequest:
    """The ``labels`` call as the gateway's catalog makes it (one ``[0]`` row when the signature takes an input)."""
    request = predict_pb2.PredictRequest()
    _spec(request, model, version, "labels")
    for name in signature.inputs:
        request.inputs[name].CopyFrom(to_tensor_proto(np.zeros([1], np.int32)))
    return request


class Recording:
    """A recording, parsed, with the ``Predict`` answers per batch size built on first use."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.model: str = document["model"]
        self.version: int = int(document["version"])
        self.status = get_model_status_pb2.GetModelStatusResponse.FromString(base64.b64decode(document["status"]))
        self.metadata = get_model_metadata_pb2.GetModelMetadataResponse.FromString(
            base64.b64decode(document["metadata"])
        )
        self.labels = (
            predict_pb2.PredictResponse.FromString(base64.b64decode(document["labels"]))
            if "labels" in document
            else None
        )
        recorded = predict_pb2.PredictResponse.FromString(base64.b64decode(document["predict"]))
        self._spec = recorded.model_spec
        self._rows = {name: to_ndarray(tensor) for name, tensor in recorded.outputs.items()}
        self._by_batch: dict[int, predict_pb2.PredictResponse] = {}

    def predict(self, batch: int) -> predict_pb2.PredictResponse:
        """The answer to ``batch`` images: the recorded rows, cycled to ``batch``."""
        answer = self._by_batch.get(batch)
        if answer is None:
            answer = predict_pb2.PredictResponse()
            answer.model_spec.CopyFrom(self._spec)
            for name, rows in self._rows.items():
                index = np.arange(batch) % len(rows)
                answer.outputs[name].CopyFrom(to_tensor_proto(np.ascontiguousarray(rows[index])))
            self._by_batch[batch] = answer
        return answer


def _known(recording: Recording, spec: Any) -> bool:
    if spec.name != recording.model:
        return False
    return not spec.HasField("version") or spec.version.value == recording.version


class _Prediction(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, recording: Recording) -> None:
        self._recording = recording

    async def Predict(self, request: Any, context: Any) -> predict_pb2.PredictResponse:
        spec = request.model_spec
        if not _known(self._recording, spec):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {spec.name}")
        signature = spec.signature_name or SERVING_DEFAULT
        if signature == "labels" and self._recording.labels is not None:
            return self._recording.labels
        if signature != SERVING_DEFAULT or len(request.inputs) != 1:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no recorded answer for signature {signature!r}")
        tensor = next(iter(request.inputs.values()))
        batch = int(tensor.tensor_shape.dim[0].size) if tensor.tensor_shape.dim else 0
        if batch < 1:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the input has no batch dimension")
        return self._recording.predict(batch)

    async def GetModelMetadata(self, request: Any, context: Any) -> Any:
        if not _known(self._recording, request.model_spec):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {request.model_spec.name}")
        return self._recording.metadata


class _Models(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, recording: Recording) -> None:
        self._recording = recording

    async def GetModelStatus(self, request: Any, context: Any) -> Any:
        if not _known(self._recording, request.model_spec):
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {request.model_spec.name}"
            )
        return self._recording.status


async def serve(recording: Recording, host: str, port: int) -> None:
    """Answer on ``host:port`` until cancelled."""
    server = grpc.aio.server(options=_OPTIONS)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_Prediction(recording), server)  # type: ignore[no-untyped-call]
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(_Models(recording), server)  # type: ignore[no-untyped-call]
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    logger.info("instant upstream for %s version %d on %s:%d", recording.model, recording.version, host, bound)
    try:
        await server.wait_for_termination()
    finally:
        await server.stop(0)


app = typer.Typer(add_completion=False, help=__doc__)


@app.command("serve")
def serve_command(
    recording: Annotated[Path, typer.Option(help="a file written by `record`")],
    port: Annotated[int, typer.Option(help="port to listen on")],
    host: str = "127.0.0.1",
) -> None:
    """Answer the gateway's TFS calls from a recording."""
    logging.basicConfig(level=logging.INFO)
    loaded = Recording(json.loads(recording.read_text()))
    asyncio.run(serve(loaded, host, port))


@app.command("record")
def record_command(
    output: Annotated[Path, typer.Option(help="where to write the recording (JSON)")],
    model_dir: Annotated[Path | None, typer.Option(help="model folder (its latest version) or a version")] = None,
    examples: Annotated[Path | None, typer.Option(help="folder of example images")] = None,
    work_dir: Annotated[Path | None, typer.Option(help="logs of the model server")] = None,
) -> None:
    """Record the real model's answers once (starts the embedded model server, TensorFlow in its own process)."""
    import tempfile

    from benchmarks.inputs import DEMO_EXAMPLES, DEMO_MODEL, canvases, latest_version, load_examples
    from benchmarks.stack import model_server

    folder = (model_dir or DEMO_MODEL).resolve()
    version_dir = folder if folder.name.isdigit() else latest_version(folder)
    with tempfile.TemporaryDirectory(prefix="spotter-record-") as tmp:
        work = work_dir or Path(tmp)
        with model_server(version_dir, work) as (handle, name):
            folder = (examples or DEMO_EXAMPLES).resolve()
            recorded = record_from(
                handle.grpc_target,
                name,
                int(version_dir.name),
                lambda size: canvases(load_examples(folder, size), size),
            )
            recorded["modelserver_idle_rss_bytes"] = _tree_rss(handle.server.pid)
    output.write_text(json.dumps(recorded) + "\n")
    typer.echo(json.dumps({"output": str(output), "images": recorded["images"], "input_size": recorded["input_size"]}))


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its children."""
    parent = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)])


if __name__ == "__main__":
    app()
