"""Write a new version's warmup records from the model's real traffic, or synthetic ones, or none.

TensorFlow Serving (and the embedded server, :mod:`services.modelserver.warmup`) replays
``assets.extra/tf_serving_warmup_requests`` before a version is AVAILABLE, so the first real request doesn't pay for
the version's first runs. The gateway keeps a uniform sample of the canvases each model was really sent
(:mod:`services.store.traffic_sample`); here they become ``serving_default`` ``PredictRequest``s for the new version,
grouped into the batch sizes of the synthetic records (1, 8, 32, 1, 8, ...: each size at least once, the last batch
filled up with the first canvases again), at most TFS's 1000 records. Canvases that are not uint8 ``[S, S, 3]`` for
the new version's ``S`` (the model was retrained at another size) are skipped and counted.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from services.errors import InvalidParameter
from services.jobs.params import WarmupSource
from services.training.export import DEFAULT_WARMUP_BATCHES, WARMUP_FILE, write_predict_logs, write_warmup_requests

log = logging.getLogger(__name__)

MAX_RECORDS = 1000
"""TFS refuses a warmup file of more records (``WarmupConsts::kMaxNumRecords``)."""


@dataclass(frozen=True, slots=True)
class WarmupWritten:
    """What an export's warmup file holds: its source (``traffic``, ``synthetic`` or ``none``), its records, and of
    the traffic sample's canvases how many were used and how many skipped (wrong shape or unreadable)."""

    source: str
    records: int
    sampled: int = 0
    used: int = 0
    skipped: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def usable_canvases(tensors: Sequence[bytes], size: int) -> tuple[list[bytes], int]:
    """The raw pixels of each serialized TensorProto that is a uint8 ``[size, size, 3]`` canvas, and how many of
    ``tensors`` were not."""
    from google.protobuf.message import DecodeError
    from tensorflow.core.framework import tensor_pb2, types_pb2

    want = (size, size, 3)
    found: list[bytes] = []
    for data in tensors:
        proto = tensor_pb2.TensorProto()
        try:
            proto.ParseFromString(data)
        except DecodeError:
            continue
        shape = tuple(int(d.size) for d in proto.tensor_shape.dim)
        if proto.dtype == types_pb2.DT_UINT8 and shape == want and len(proto.tensor_content) == size * size * 3:
            found.append(bytes(proto.tensor_content))
    return found, len(tensors) - len(found)


def batched_canvases(
    canvases: Sequence[bytes],
    size: int,
    *,
    batches: Sequence[int] = DEFAULT_WARMUP_BATCHES,
    max_records: int = MAX_RECORDS,
) -> Iterator[Any]:
    """uint8 ``[b, size, size, 3]`` TensorProtos of ``canvases``, ``b`` cycling through ``batches``, until every
    canvas is used and every batch size has appeared (a short batch is filled up from the first canvases)."""
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

    if not canvases:
        return
    seen: set[int] = set()
    start = 0
    for count, batch in enumerate(itertools.cycle(batches)):
        if count >= max_records or (start >= len(canvases) and seen >= set(batches)):
            return
        chunk = [canvases[(start + i) % len(canvases)] for i in range(batch)]
        dims = [tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in (batch, size, size, 3)]
        yield tensor_pb2.TensorProto(
            dtype=types_pb2.DT_UINT8,
            tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=dims),
            tensor_content=b"".join(chunk),
        )
        start += batch
        seen.add(batch)


def write_warmup(
    version_dir: Path,
    source: WarmupSource,
    sample: Sequence[bytes] | None,
    *,
    model_name: str,
    size: int,
) -> WarmupWritten:
    """Make ``version_dir``'s warmup file what ``source`` asks for (see :data:`services.jobs.params.WarmupSource`).

    Args:
        version_dir: an export (not yet published).
        source: ``auto``, ``traffic``, ``synthetic`` or ``none``.
        sample: the model's traffic sample (serialized TensorProtos); None when it was not read.
        model_name: the name the records address (the published model's).
        size: the new version's input size ``S``.

    Raises:
        InvalidParameter: ``traffic`` was asked for and no canvas of the sample fits.
    """
    path = version_dir / "assets.extra" / WARMUP_FILE
    if source == "none":
        path.unlink(missing_ok=True)
        return WarmupWritten("none", 0)
    canvases, skipped = usable_canvases(sample or [], size) if source in ("auto", "traffic") else ([], 0)
    sampled = len(sample or [])
    if skipped:
        log.warning(
            "%d of %d sampled canvases of %s are not %dx%dx3: skipped", skipped, sampled, model_name, size, size
        )
    if canvases:
        records = write_predict_logs(path, model_name=model_name, inputs=batched_canvases(canvases, size))
        log.info("warmup of %s: %d records from %d canvases of real traffic", model_name, records, len(canvases))
        return WarmupWritten("traffic", records, sampled, len(canvases), skipped)
    if source == "traffic":
        raise InvalidParameter(
            f"warmup 'traffic' asked for, but model {model_name!r} has no sampled canvas of {size}x{size}x3 "
            f"({sampled} sampled, {skipped} of another shape): turn SPOTTER_WARMUP_SAMPLES on in the gateway, "
            "or export with warmup 'auto' or 'synthetic'",
            details={"warmup": source, "sampled": sampled, "skipped": skipped},
        )
    write_warmup_requests(path, model_name=model_name, size=size)
    return WarmupWritten("synthetic", len(DEFAULT_WARMUP_BATCHES), sampled, 0, skipped)
