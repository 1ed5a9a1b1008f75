"""Warmup from real traffic, the export's half: a model's sampled canvases become the new version's TFS warmup
records (batched 1, 8, 32, ..., canvases of another shape skipped and counted), which the embedded model server
replays before the version is served; ``auto`` falls back to synthetic records, ``traffic`` refuses to, ``none``
writes none. (The export job reading the sample from Redis is tested with the pipeline's, in test_pipeline.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from services.errors import InvalidParameter
from services.modelserver.warmup import load_servable, run_warmup
from services.training.export import WARMUP_FILE
from services.training.traffic_warmup import MAX_RECORDS, batched_canvases, write_warmup
from tests.support import warmup_records
from tests.support.tiny_models import build_detector
from tests.support.warmup_records import records

SIZE = 8


def canvas_proto(value: int, size: int = SIZE) -> bytes:
    return warmup_records.canvas_proto(value, size)


def served_calls(version_dir: Path) -> int:
    """Load the version as the model server does (restore, then replay its warmup) and read how many times its
    ``serving_default`` ran: nothing but warmup has called it."""
    servable = load_servable("tiny", 1, version_dir)
    outputs = servable.run(servable.signature("calls"), {})
    return int(np.asarray(outputs["count"][1]).reshape(-1)[0])


@pytest.fixture
def version(tmp_path: Path) -> Path:
    return build_detector(tmp_path / "tiny" / "1", size=SIZE, count_calls=True)


def test_sampled_canvases_become_batched_records_the_model_server_replays(version: Path) -> None:
    sample = [canvas_proto(v) for v in range(10)] + [canvas_proto(7, size=16), canvas_proto(9, size=4), b"\xff junk"]
    written = write_warmup(version, "auto", sample, model_name="tiny", size=SIZE)
    assert (written.source, written.sampled, written.used, written.skipped) == ("traffic", 13, 10, 3)

    found = records(version)
    assert written.records == len(found) == 3  # batches of 1, 8 and 32: each size once, every canvas used
    batches = [tf.make_ndarray(r.inputs["images"]) for r in found]
    assert [b.shape for b in batches] == [(1, SIZE, SIZE, 3), (8, SIZE, SIZE, 3), (32, SIZE, SIZE, 3)]
    assert [int(b[i, 0, 0, 0]) for b in batches[:2] for i in range(len(b))] == list(range(9))
    assert [int(v) for v in batches[2][:3, 0, 0, 0]] == [9, 0, 1]  # the last batch filled up from the first
    assert {(r.model_spec.name, r.model_spec.signature_name) for r in found} == {("tiny", "serving_default")}

    assert served_calls(version) == 3


def test_without_a_fitting_sample_auto_writes_synthetic_records_and_traffic_refuses(version: Path) -> None:
    other_size = [canvas_proto(1, size=16)]
    with pytest.raises(InvalidParameter, match="no sampled canvas of 8x8x3") as refused:
        write_warmup(version, "traffic", other_size, model_name="tiny", size=SIZE)
    assert refused.value.details == {"warmup": "traffic", "sampled": 1, "skipped": 1}

    written = write_warmup(version, "auto", other_size, model_name="tiny", size=SIZE)
    assert (written.source, written.records, written.skipped) == ("synthetic", 3, 1)
    grey = tf.make_ndarray(records(version)[0].inputs["images"])
    assert grey.shape == (1, SIZE, SIZE, 3) and set(np.unique(grey)) == {114}
    assert served_calls(version) == 3


def test_none_writes_no_warmup_file(version: Path) -> None:
    write_warmup(version, "traffic", [canvas_proto(3)], model_name="tiny", size=SIZE)
    written = write_warmup(version, "none", [canvas_proto(3)], model_name="tiny", size=SIZE)
    assert written.source == "none" and not (version / "assets.extra" / WARMUP_FILE).exists()
    servable = load_servable("tiny", 1, version)
    assert run_warmup(servable) == 0


def test_records_are_capped_where_tfs_stops_reading() -> None:
    canvases = [bytes(2 * 2 * 3)] * (MAX_RECORDS + 50)
    assert sum(1 for _ in batched_canvases(canvases, 2, batches=(1,))) == MAX_RECORDS
