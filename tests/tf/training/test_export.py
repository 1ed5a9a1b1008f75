"""Export: the three signatures with a dynamic batch, detect_encoded's mapping to the original image, warmup
records, and atomic publishing as n + 1."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow_serving.apis import prediction_log_pb2

from services.training.detector import DetectorConfig, build_detector
from services.training.export import (
    METADATA_FILE,
    WARMUP_FILE,
    existing_versions,
    export_and_publish,
    export_detector,
    export_staging,
    publish,
)
from services.training.letterbox import boxes_from_canvas, letterbox

SIZE = 96
CLASSES = ("circle", "square")


@pytest.fixture(scope="module")
def config() -> DetectorConfig:
    return DetectorConfig(classes=CLASSES, input_size=SIZE, max_detections=20)


@pytest.fixture(scope="module")
def model(config: DetectorConfig):  # type: ignore[no-untyped-def]
    tf.keras.utils.set_random_seed(3)
    model = build_detector(config)
    # An untrained head scores every cell about the same; near-ties could then swap places between two calls that
    # differ in the last float bit (batch sizes pick different kernels). Spread the logits so rankings are stable.
    layer = model.get_layer("heat_logits")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel * 50, bias])
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, model, config: DetectorConfig) -> Path:  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("export") / "tiny"
    return export_detector(model, config, folder, model_name="tiny", score_floor=0.0)


@pytest.fixture(scope="module")
def loaded(exported: Path):  # type: ignore[no-untyped-def]
    return tf.saved_model.load(str(exported))


def test_three_signatures_with_the_contract_specs(loaded) -> None:  # type: ignore[no-untyped-def]
    assert set(loaded.signatures) == {"serving_default", "detect_encoded", "labels"}
    serve = loaded.signatures["serving_default"]
    spec = serve.structured_input_signature[1]["images"]
    assert spec.shape.as_list() == [None, SIZE, SIZE, 3] and spec.dtype == tf.uint8
    outputs = serve.structured_outputs
    assert outputs["detection_boxes"].shape.as_list() == [None, 20, 4]
    assert {k: v.dtype for k, v in outputs.items()} == {
        "detection_boxes": tf.float32,
        "detection_scores": tf.float32,
        "detection_classes": tf.float32,
        "num_detections": tf.float32,
    }
    encoded = loaded.signatures["detect_encoded"].structured_input_signature[1]["encoded"]
    assert encoded.shape.as_list() == [None] and encoded.dtype == tf.string


@pytest.mark.parametrize("batch", [1, 3])
def test_serving_default_takes_any_batch(loaded, batch: int) -> None:  # type: ignore[no-untyped-def]
    images = np.random.default_rng(batch).integers(0, 256, (batch, SIZE, SIZE, 3), dtype=np.uint8)
    out = loaded.signatures["serving_default"](images=tf.constant(images))
    assert out["detection_boxes"].shape == (batch, 20, 4)
    assert out["detection_scores"].shape == (batch, 20)
    assert out["detection_classes"].shape == (batch, 20)
    assert out["num_detections"].shape == (batch,)
    n = int(out["num_detections"][0])
    classes = out["detection_classes"][0, :n].numpy()
    assert set(classes.tolist()) <= {1.0, 2.0}
    boxes = out["detection_boxes"].numpy()
    assert (boxes >= 0).all() and (boxes <= 1).all()
    scores = out["detection_scores"][0].numpy()
    assert (np.diff(scores[:n]) <= 1e-6).all()  # descending, up to float32 rounding of the sigmoid


def test_exported_model_answers_like_the_keras_model(loaded, model, config: DetectorConfig) -> None:  # type: ignore[no-untyped-def]
    from services.training.postprocess import decode_detections

    images = np.random.default_rng(9).integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
    want = decode_detections(
        model(images.astype(np.float32)), num_classes=2, stride=4, max_detections=20, score_floor=0.0
    )
    got = loaded.signatures["serving_default"](images=tf.constant(images))
    np.testing.assert_allclose(got["detection_scores"].numpy(), want["detection_scores"].numpy(), atol=1e-5)


def test_labels_signature_answers_one_row_per_batch_element(loaded) -> None:  # type: ignore[no-untyped-def]
    # TFS's batching needs an input and outputs batched along dimension 0 (docs/architecture.md).
    labels = loaded.signatures["labels"]
    spec = labels.structured_input_signature[1]["batch"]
    assert spec.shape.as_list() == [None] and spec.dtype == tf.int32
    assert {k: v.shape.as_list() for k, v in labels.structured_outputs.items()} == {
        "ids": [None, 2],
        "names": [None, 2],
    }
    out = labels(batch=tf.constant([0]))
    assert out["ids"].dtype == tf.int32
    assert out["ids"].numpy().tolist() == [[1, 2]]
    assert [n.decode() for n in out["names"].numpy()[0]] == list(CLASSES)
    three = labels(batch=tf.constant([7, 0, -1]))
    assert three["ids"].numpy().tolist() == [[1, 2]] * 3 and three["names"].shape == (3, 2)


def _jpeg(h: int, w: int, seed: int) -> bytes:
    image = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def test_detect_encoded_boxes_are_normalised_to_the_original_image(loaded) -> None:  # type: ignore[no-untyped-def]
    data = [_jpeg(60, 150, 1), _jpeg(200, 80, 2)]
    out = loaded.signatures["detect_encoded"](encoded=tf.constant(data))
    assert out["detection_boxes"].shape == (2, 20, 4)
    for i, blob in enumerate(data):
        image = tf.io.decode_jpeg(blob, channels=3)
        canvas, scale = letterbox(image, SIZE)
        direct = loaded.signatures["serving_default"](images=canvas[None])
        h, w = image.shape[0], image.shape[1]
        want = boxes_from_canvas(direct["detection_boxes"][0], h, w, scale, SIZE).numpy()
        n = int(direct["num_detections"][0])
        assert int(out["num_detections"][i]) == n
        np.testing.assert_allclose(out["detection_boxes"][i, :n].numpy(), want[:n], atol=1e-5)
        np.testing.assert_allclose(out["detection_scores"][i].numpy(), direct["detection_scores"][0].numpy(), atol=1e-5)
    # A box on the canvas's image part maps to the whole original: on the 60x150 image (scale 0.64, 96x38 on the
    # canvas), canvas y = 38.4 / 96 = 0.4 is the original's bottom edge.
    _, scale = letterbox(tf.zeros([60, 150, 3], tf.uint8), SIZE)
    back = boxes_from_canvas(tf.constant([[0.0, 0.0, 0.4, 1.0]]), 60, 150, scale, SIZE).numpy()
    np.testing.assert_allclose(back[0], [0, 0, 1, 1], atol=1e-6)


def test_detect_encoded_takes_png_too(loaded) -> None:  # type: ignore[no-untyped-def]
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((50, 70, 3), np.uint8)).save(buffer, format="PNG")
    out = loaded.signatures["detect_encoded"](encoded=tf.constant([buffer.getvalue()]))
    assert out["detection_boxes"].shape == (1, 20, 4)


def test_warmup_records_parse_and_run(exported: Path, loaded) -> None:  # type: ignore[no-untyped-def]
    records = list(tf.data.TFRecordDataset(str(exported / "assets.extra" / WARMUP_FILE)).as_numpy_iterator())
    batches = []
    for raw in records:
        log = prediction_log_pb2.PredictionLog.FromString(raw)
        request = log.predict_log.request
        assert request.model_spec.signature_name == "serving_default"
        images = tf.make_ndarray(request.inputs["images"])
        assert images.dtype == np.uint8 and images.shape[1:] == (SIZE, SIZE, 3)
        out = loaded.signatures["serving_default"](images=tf.constant(images))
        assert out["num_detections"].shape == (images.shape[0],)
        batches.append(images.shape[0])
    assert batches[0] == 1 and max(batches) > 1


def test_metadata_carries_the_config(exported: Path, config: DetectorConfig) -> None:
    info = json.loads((exported / "assets.extra" / METADATA_FILE).read_text())
    assert info["kind"] == "detector"
    assert DetectorConfig.from_dict(info["detector"]) == config


def _fake_export(model_dir: Path, tag: str) -> Path:
    folder = model_dir / f".tmp-{tag}"
    folder.mkdir(parents=True)
    (folder / "saved_model.pb").write_text(tag)
    return folder


def test_publish_numbers_versions_n_plus_one(tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    assert publish(_fake_export(model_dir, "a"), model_dir) == 1
    (model_dir / "7").mkdir()
    (model_dir / "7" / "saved_model.pb").write_text("x")
    assert publish(_fake_export(model_dir, "b"), model_dir) == 8
    assert existing_versions(model_dir) == [1, 7, 8]
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".")]


def test_publish_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    publish(_fake_export(model_dir, "a"), model_dir, version=1)
    with pytest.raises(FileExistsError):
        publish(_fake_export(model_dir, "b"), model_dir, version=1)
    publish(_fake_export(model_dir, "c"), model_dir, version=1, replace=True)
    assert (model_dir / "1" / "saved_model.pb").read_text() == "c"
    # the replaced folder and the staged one are gone; the refused one is its caller's to remove
    assert sorted(p.name for p in model_dir.iterdir()) == [".tmp-b", "1"]


def test_export_staging_leaves_only_what_was_published(tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    with export_staging(model_dir) as staging:
        assert not staging.exists() and staging.parent.parent == model_dir  # export_detector makes it
        assert staging.parent.name.startswith(".")  # hidden: no server takes it for a version
        _fake_export(staging.parent, "a").rename(staging)
        assert publish(staging, model_dir) == 1
    with pytest.raises(RuntimeError), export_staging(model_dir) as staging:
        _fake_export(staging.parent, "b").rename(staging)
        raise RuntimeError("the gate refused it")
    assert [p.name for p in model_dir.iterdir()] == ["1"]


def test_racing_publishers_never_overwrite_each_other(tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    stagings = [_fake_export(model_dir, str(i)) for i in range(12)]
    versions: list[int] = []
    barrier = threading.Barrier(len(stagings))

    def run(staging: Path) -> None:
        barrier.wait()
        versions.append(publish(staging, model_dir))

    threads = [threading.Thread(target=run, args=(s,)) for s in stagings]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(versions) == list(range(1, 13))
    tags = sorted((model_dir / str(v) / "saved_model.pb").read_text() for v in versions)
    assert tags == sorted(str(i) for i in range(12))


def test_export_and_publish_leaves_nothing_when_export_fails(tmp_path: Path, model) -> None:  # type: ignore[no-untyped-def]
    wrong = DetectorConfig(classes=("a", "b", "c"), input_size=SIZE)  # 3 classes: the weights do not fit
    with pytest.raises(ValueError):
        export_and_publish(model, wrong, tmp_path / "m")
    assert list((tmp_path / "m").iterdir()) == []


def test_export_and_publish_makes_a_served_version(tmp_path: Path, model, config: DetectorConfig) -> None:  # type: ignore[no-untyped-def]
    version, path = export_and_publish(model, config, tmp_path / "m")
    assert version == 1 and (path / "saved_model.pb").is_file()
    assert (path / "assets.extra" / WARMUP_FILE).is_file()
