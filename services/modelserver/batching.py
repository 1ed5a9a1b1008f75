"""TFS's server-side batching (``--enable_batching``, ``--batching_parameters_file``; ``batching_session.cc``).

Runs of a version with the same feeds and fetches (one signature) share a queue: a batch is cut when it holds
``max_batch_size`` rows or its oldest request has waited ``batch_timeout_micros``; the inputs are concatenated
along dimension 0 (variable-length ones padded with zeros when ``pad_variable_length_inputs``), the batch is padded
up to the next ``allowed_batch_sizes`` entry with copies of its first row, run once, and each request gets its rows
of every output back. A queue holding ``max_enqueued_batches`` batches answers UNAVAILABLE at once. At most
``num_batch_threads`` batches run at a time, across all models. So several gateway replicas in front of one model
server share batches, as they do in front of TFS.

The parameters file is TFS's text-format ``BatchingParameters``; the message isn't in the pip packages, so it is
declared here with the same field names and numbers and read with protobuf's own text parser.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2

from services.modelserver.config import ConfigError
from services.modelserver.status import ServingError, invalid_argument

log = logging.getLogger(__name__)

Array = np.ndarray[Any, Any]


def _batching_parameters_class() -> Any:
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    proto = descriptor_pb2.FileDescriptorProto(
        name="spotter/modelserver/batching_parameters.proto",
        package="tensorflow.serving",
        dependency=["google/protobuf/wrappers.proto"],
        syntax="proto3",
    )
    message = proto.message_type.add(name="BatchingParameters")
    optional, repeated = (
        descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
        descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
    )
    kinds = descriptor_pb2.FieldDescriptorProto
    for number, (name, wrapper) in enumerate(
        [
            ("max_batch_size", ".google.protobuf.Int64Value"),
            ("batch_timeout_micros", ".google.protobuf.Int64Value"),
            ("max_enqueued_batches", ".google.protobuf.Int64Value"),
            ("num_batch_threads", ".google.protobuf.Int64Value"),
            ("thread_pool_name", ".google.protobuf.StringValue"),
        ],
        start=1,
    ):
        message.field.add(name=name, number=number, label=optional, type=kinds.TYPE_MESSAGE, type_name=wrapper)
    message.field.add(name="allowed_batch_sizes", number=6, label=repeated, type=kinds.TYPE_INT64)
    message.field.add(name="pad_variable_length_inputs", number=7, label=optional, type=kinds.TYPE_BOOL)
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


BatchingParametersProto = _batching_parameters_class()


@dataclass(frozen=True)
class BatchingParameters:
    """TFS's ``BatchingParameters``, with the defaults of its ``BasicBatchScheduler::Options``."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = 4
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False

    def padded_size(self, rows: int) -> int:
        return next((size for size in self.allowed_batch_sizes if size >= rows), rows)


def read_batching_parameters(path: Path | None) -> BatchingParameters:
    """Parse a text-format ``BatchingParameters`` file (None: TFS's defaults).

    Raises:
        ConfigError: unreadable, not the message, or ``allowed_batch_sizes`` not increasing up to
            ``max_batch_size``.
    """
    if path is None:
        return BatchingParameters()
    proto = BatchingParametersProto()
    try:
        text_format.Parse(path.read_text(), proto)
    except (OSError, text_format.ParseError) as exc:
        raise ConfigError(f"cannot read the batching parameters file {path}: {exc}") from exc
    defaults = BatchingParameters()
    values = {
        name: getattr(proto, name).value if proto.HasField(name) else getattr(defaults, name)
        for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads")
    }
    allowed = tuple(int(size) for size in proto.allowed_batch_sizes)
    if any(b <= a for a, b in itertools.pairwise(allowed)):
        raise ConfigError(f"{path}: allowed_batch_sizes entries must be monotonically increasing")
    if allowed and allowed[-1] != values["max_batch_size"]:
        raise ConfigError(f"{path}: final entry in allowed_batch_sizes must equal max_batch_size")
    if min(values.values()) < 0 or values["max_batch_size"] < 1 or values["num_batch_threads"] < 1:
        raise ConfigError(f"{path}: max_batch_size and num_batch_threads must be >= 1, the others >= 0")
    return BatchingParameters(
        **values, allowed_batch_sizes=allowed, pad_variable_length_inputs=proto.pad_variable_length_inputs
    )


@dataclass
class _Task:
    feeds: Mapping[str, Array]
    rows: int
    enqueued: float = field(default_factory=time.monotonic)
    future: Future[list[Array]] = field(default_factory=Future)


class _Queue:
    """One signature's queue: a thread cuts batches and runs them (holding one of the shared run slots)."""

    def __init__(
        self,
        owner: weakref.ref[Any],
        bundle: Any,
        fetches: Sequence[str],
        params: BatchingParameters,
        slots: threading.Semaphore,
    ) -> None:
        # The thread ends once its BatchingBundle is gone (its version unloaded), freeing the bundle with it.
        self._owner = owner
        self._bundle, self._fetches, self._params, self._slots = bundle, list(fetches), params, slots
        self._tasks: list[_Task] = []
        self._rows = 0
        self._cond = threading.Condition()
        self._closed = False
        threading.Thread(target=self._run, name="batch", daemon=True).start()

    def submit(self, task: _Task) -> Future[list[Array]]:
        limit = self._params.max_batch_size
        if task.rows > limit:
            raise invalid_argument(f"Task size {task.rows} is larger than maximum input batch size {limit}")
        with self._cond:
            if self._rows + task.rows > limit * max(1, self._params.max_enqueued_batches):
                raise ServingError(
                    grpc.StatusCode.UNAVAILABLE, "The batch scheduling queue to which this task was submitted is full"
                )
            self._tasks.append(task)
            self._rows += task.rows
            self._cond.notify()
        return task.future

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _next_batch(self) -> list[_Task] | None:
        timeout = self._params.batch_timeout_micros / 1e6
        with self._cond:
            while True:
                if self._closed or (not self._tasks and self._owner() is None):
                    return None
                if self._tasks:
                    waited = time.monotonic() - self._tasks[0].enqueued
                    if self._rows >= self._params.max_batch_size or waited >= timeout:
                        break
                    self._cond.wait(timeout - waited)
                else:
                    self._cond.wait(1.0)
            batch: list[_Task] = []
            rows = 0
            while self._tasks and rows + self._tasks[0].rows <= self._params.max_batch_size:
                task = self._tasks.pop(0)
                batch.append(task)
                rows += task.rows
            self._rows -= rows
            return batch

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            with self._slots:
                try:
                    outputs = self._bundle.run(_merge(batch, self._params), self._fetches)
                    _split(batch, outputs)
                except Exception as exc:  # every request of the batch gets the batch's error
                    for task in batch:
                        if not task.future.done():
                            task.future.set_exception(exc)


def _merge(batch: list[_Task], params: BatchingParameters) -> dict[str, Array]:
    rows = sum(task.rows for task in batch)
    padding = params.padded_size(rows) - rows
    merged: dict[str, Array] = {}
    for name in batch[0].feeds:
        parts = [np.asarray(task.feeds[name]) for task in batch]
        if params.pad_variable_length_inputs:
            widest = np.max([part.shape[1:] for part in parts], axis=0) if parts[0].ndim > 1 else ()
            parts = [
                np.pad(part, [(0, 0)] + [(0, int(w) - s) for w, s in zip(widest, part.shape[1:], strict=True)])
                for part in parts
            ]
        shapes = {part.shape[1:] for part in parts}
        if len(shapes) > 1:
            raise invalid_argument(
                f"Batching session input tensors of {name} must have equal shapes beyond the 0th dimension to be "
                f"batched (got {sorted(shapes)}); set pad_variable_length_inputs to pad them"
            )
        if padding:
            parts.append(np.repeat(parts[0][:1], padding, axis=0))
        merged[name] = np.concatenate(parts, axis=0)
    return merged


def _split(batch: list[_Task], outputs: Sequence[Array]) -> None:
    total = sum(task.rows for task in batch)
    for output in outputs:
        if output.ndim == 0 or output.shape[0] < total:
            raise ServingError(
                grpc.StatusCode.INTERNAL,
                f"Batched output tensor has 0th dimension {output.shape[0] if output.ndim else 'none'}, which is "
                f"less than the batch's {total} rows",
            )
    start = 0
    for task in batch:
        task.future.set_result([output[start : start + task.rows] for output in outputs])
        start += task.rows


class BatchingBundle:
    """A bundle whose runs are batched with the runs of other requests (TFS's ``BatchingSession``)."""

    def __init__(self, bundle: Any, params: BatchingParameters, slots: threading.Semaphore) -> None:
        self._bundle, self._params, self._slots = bundle, params, slots
        self._queues: dict[tuple[Any, ...], _Queue] = {}
        self._lock = threading.Lock()

    def run(self, feeds: Mapping[str, Array], fetches: Sequence[str]) -> list[Array]:
        if not feeds:
            raise invalid_argument("Batching session Run() must have at least one input tensor")
        rows = {np.asarray(value).shape[0] if np.ndim(value) else -1 for value in feeds.values()}
        if -1 in rows:
            raise invalid_argument("Batching session Run() input tensors must have at least one dimension")
        if len(rows) > 1:
            raise invalid_argument("Batching session Run() input tensors must have equal 0th-dimension size")
        names = tuple(sorted(feeds))
        arrays = [np.asarray(feeds[name]) for name in names]
        # Runs are batched with runs of the same signature whose inputs concatenate: same dtypes (and shapes beyond
        # the batch dimension, unless those are padded).
        kinds = tuple((a.dtype.str, a.ndim if self._params.pad_variable_length_inputs else a.shape[1:]) for a in arrays)
        key = (names, tuple(fetches), kinds)
        with self._lock:
            queue = self._queues.get(key)
            if queue is None:
                queue = _Queue(weakref.ref(self), self._bundle, fetches, self._params, self._slots)
                self._queues[key] = queue
        return queue.submit(_Task(dict(zip(names, arrays, strict=True)), rows.pop())).result()

    def close(self) -> None:
        with self._lock:
            for queue in self._queues.values():
                queue.close()
            self._queues.clear()
        self._bundle.close()
