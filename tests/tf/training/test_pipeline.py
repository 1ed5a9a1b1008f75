"""The job pipeline in process: a detector run that is interrupted and resumed by a new job (epoch and optimizer
state), a classifier trained, evaluated and exported with the classifier signatures, the export gate refusing a worse
version unless forced, failed exports that publish nothing, and an export job that warms its version with the
model's traffic sample read from Redis."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
import tensorflow as tf

from services.errors import InvalidParameter, Unavailable
from services.jobs.params import EvaluateParams, ExportParams, TrainParams
from services.store.checks import check_train
from services.store.datasets.annotations import SourceFormat
from services.store.datasets.request import ImportRequest
from services.store.datasets.storage import DatasetStore
from services.store.runs import RunStore
from services.store.traffic_sample import SampleStore
from services.training import fitting, pipeline
from services.training.checkpoints import latest_checkpoint, list_checkpoints
from services.training.datasets.importer import import_dataset
from services.training.gate import GateRefused
from services.worker.config import WorkerSettings
from services.worker.jobs import JobContext, export
from tests.datasets.fixtures import scenes, write_roads_dataset, write_voc_dataset
from tests.support.warmup_records import canvas_proto, records

DEMO = Path(__file__).resolve().parents[3] / "models" / "demo" / "1"


class Reporter:
    """A job's reporter without RQ: progress in a dict, artifacts in a folder."""

    def __init__(self, folder: Path, name: str) -> None:
        self.artifacts = folder / name
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self.meta: dict[str, Any] = {}
        self._id = name

    @property
    def id(self) -> str:
        return self._id

    def update(self, **fields: Any) -> None:
        fields.pop("force", None)
        self.meta.update(fields)

    def write_json(self, name: str, body: Any) -> Path:
        path = self.artifacts / name
        path.write_text(json.dumps(body, default=str))
        return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``shapes`` (detection, 24 scenes of 320 px, the demo's scale) and ``roads`` (classification: road-like vs
    field-like images, 16 of each)."""
    base = tmp_path_factory.mktemp("pipeline")
    write_voc_dataset(base / "voc", scenes(count=24, size=320))
    store = DatasetStore(base / "data")
    import_dataset(ImportRequest(name="shapes", format=SourceFormat.VOC, source=base / "voc", split=0.75), store)
    write_roads_dataset(base / "folders", per_class=16)
    import_dataset(ImportRequest(name="roads", format=SourceFormat.FOLDERS, source=base / "folders", split=0.75), store)
    return base / "data"


def small(dataset: str, run: str, **overrides: Any) -> TrainParams:
    values: dict[str, Any] = {
        "dataset": dataset,
        "run": run,
        "input_size": 64,
        "epochs": 2,
        "steps_per_epoch": 3,
        "batch_size": 4,
        "weights": "none",
        "patience": 0,
    }
    return TrainParams(**{**values, **overrides})


def test_an_interrupted_run_is_resumed_by_a_new_job_from_its_last_checkpoint(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_save = fitting.save_checkpoint

    def save_then_die(folder: Path, epoch: int, *args: Any, **kwargs: Any) -> Any:
        real_save(folder, epoch, *args, **kwargs)
        (folder / ".tmp-0002-deadbeef").mkdir()  # what a save killed half-way leaves
        raise SystemExit("killed after epoch 1")  # like RQ's stop: not an Exception

    monkeypatch.setattr(fitting, "save_checkpoint", save_then_die)
    params = check_train(small("shapes", "det"), data)
    with pytest.raises(SystemExit):
        pipeline.train(params, Reporter(tmp_path, "first"), data)
    monkeypatch.undo()
    checkpoints = data / "runs" / "det" / "checkpoints"
    assert [c.epoch for c in list_checkpoints(checkpoints)] == [1]  # the stray half-save is not a checkpoint
    info = RunStore(data).info("det")
    assert info is not None and info.state == "training"  # the checkpoint, not run.json, is what resumes

    # A new job naming the run: the settings must match, and it goes on from epoch 1 with the optimizer's step.
    with pytest.raises(InvalidParameter, match="alpha"):
        check_train(small("shapes", "det", alpha=0.5), data)
    with caplog.at_level(logging.INFO):
        result = pipeline.train(check_train(small("shapes", "det"), data), Reporter(tmp_path, "second"), data)
    assert result.resumed_from_epoch == 1 and result.epochs_done == 2
    assert any(
        "resuming run det from its epoch-1 checkpoint (optimizer step 3)" in r.getMessage() for r in caplog.records
    )
    assert not list(checkpoints.glob(".tmp-*"))
    assert latest_checkpoint(checkpoints).epoch == 2  # type: ignore[union-attr]
    assert (tmp_path / "second" / "training_curve.png").read_bytes()[:4] == b"\x89PNG"
    history = json.loads((tmp_path / "second" / "metrics.json").read_text())["history"]
    assert len(history["loss"]) == 2 and len(history["val_loss"]) == 2  # the first job's epoch is kept
    assert list((data / "runs" / "det" / "tensorboard").rglob("events.out.tfevents.*"))
    with pytest.raises(InvalidParameter, match="complete"):
        check_train(small("shapes", "det"), data)


def test_a_classifier_trains_evaluates_and_exports_with_the_classifier_signatures(data: Path, tmp_path: Path) -> None:
    params = small("roads", "cls", epochs=4, steps_per_epoch=8, batch_size=8, learning_rate=0.01)
    trained = pipeline.train(check_train(params, data), Reporter(tmp_path, "train"), data)
    assert trained.kind == "classifier" and "val_accuracy" in trained.metrics
    evaluated = pipeline.evaluate(EvaluateParams(run="cls"), Reporter(tmp_path, "eval"), data, tmp_path / "models")
    # 32 steps from scratch tell road from field on the 8 validation images (1.0 measured; chance is 0.5).
    assert evaluated.kind == "classifier" and (evaluated.accuracy or 0.0) >= 0.75, evaluated
    assert (tmp_path / "eval" / "confusion_matrix.png").is_file()
    report = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert report["confusion_matrix"]["classes"] == ["not-road", "road"]
    exported = pipeline.export(
        ExportParams(run="cls", model="roads"), Reporter(tmp_path, "export"), data, tmp_path / "models"
    )
    assert exported.version == 1 and exported.gate["metric"] == "accuracy"
    loaded = tf.saved_model.load(exported.path)
    serve = loaded.signatures["serving_default"]
    assert serve.structured_input_signature[1]["images"].shape.as_list() == [None, 64, 64, 3]
    probabilities = serve(images=tf.zeros([3, 64, 64, 3], tf.uint8))["probabilities"].numpy()
    assert probabilities.shape == (3, 2) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    names = loaded.signatures["labels"](batch=tf.constant([0]))["names"].numpy()[0]
    assert [n.decode() for n in names] == ["not-road", "road"]


def test_the_gate_refuses_a_worse_version_unless_forced(data: Path, tmp_path: Path) -> None:
    """The demo model is served; a barely trained detector of the same classes scores far worse on the same scenes."""
    models = tmp_path / "models"
    shutil.copytree(DEMO, models / "demo" / "1")
    if RunStore(data).info("weak") is None:
        pipeline.train(check_train(small("shapes", "weak", epochs=1), data), Reporter(tmp_path, "t"), data)
    params = ExportParams(run="weak", model="demo", threshold=0.05)
    with pytest.raises(GateRefused) as refused:
        pipeline.export(params, Reporter(tmp_path, "refused"), data, models)
    gate = refused.value.details
    assert gate["served_version"] == 1 and gate["served"] > 0.5 and gate["candidate"] < gate["served"] - 0.05
    assert sorted(p.name for p in (models / "demo").iterdir()) == ["1"]  # nothing published, nothing left behind
    assert json.loads((tmp_path / "refused" / "gate.json").read_text())["passed"] is False

    forced = pipeline.export(params.model_copy(update={"force": True}), Reporter(tmp_path, "forced"), data, models)
    assert forced.version == 2 and forced.gate["forced"] is True
    assert "forced" in forced.gate["reason"]


def test_a_failed_export_publishes_nothing(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if RunStore(data).info("weak") is None:
        pipeline.train(check_train(small("shapes", "weak", epochs=1), data), Reporter(tmp_path, "t"), data)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise GateRefused("the export breaks the contract: (simulated)")

    monkeypatch.setattr(pipeline, "run_gate", broken)
    with pytest.raises(GateRefused):
        pipeline.export(ExportParams(run="weak", model="fresh"), Reporter(tmp_path, "e"), data, tmp_path / "models")
    assert not (tmp_path / "models" / "fresh").exists()  # no version, no staging folder, no empty model folder


def test_the_export_job_warms_the_new_version_with_the_models_traffic_sample(
    data: Path, tmp_path: Path, redis_url: str
) -> None:
    if RunStore(data).info("weak") is None:
        pipeline.train(check_train(small("shapes", "weak", epochs=1), data), Reporter(tmp_path, "t"), data)
    size = small("shapes", "weak").input_size
    connection = redis.Redis.from_url(redis_url)
    store = SampleStore(connection, ttl_seconds=600)
    for value in range(3):
        store.count("warm-shapes")
        store.put("warm-shapes", value, canvas_proto(value * 50, size=size))
    store.put("warm-shapes", 3, canvas_proto(1, size=size + 32))  # the model was served at another size before

    settings = WorkerSettings(_env_file=None, data_dir=data, model_root=tmp_path / "models", redis_url=redis_url)
    reporter = Reporter(tmp_path, "e")
    result = export(ExportParams(run="weak", model="warm-shapes", warmup="traffic"), JobContext(reporter, settings))
    warmup = json.loads((reporter.artifacts / "warmup.json").read_text())
    assert warmup == {"source": "traffic", "records": 3, "sampled": 4, "used": 3, "skipped": 1}
    found = records(Path(result.path))
    assert [tf.make_ndarray(r.inputs["images"]).shape[0] for r in found] == [1, 8, 32]
    assert {r.model_spec.name for r in found} == {"warm-shapes"}

    # Redis gone: auto falls back to synthetic records, traffic fails the job before anything is published.
    gone = WorkerSettings(
        _env_file=None, data_dir=data, model_root=tmp_path / "models", redis_url="redis://127.0.0.1:1/0"
    )
    reporter = Reporter(tmp_path, "e2")
    result = export(ExportParams(run="weak", model="warm-shapes", force=True), JobContext(reporter, gone))
    assert json.loads((reporter.artifacts / "warmup.json").read_text())["source"] == "synthetic"
    with pytest.raises(Unavailable, match="can't be read from Redis"):
        export(ExportParams(run="weak", model="warm-shapes", warmup="traffic", force=True), JobContext(reporter, gone))
    assert result.versions == [1, 2]
    connection.close()
