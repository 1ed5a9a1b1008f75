"""Records go both ways with the TF Object Detection API: ours parse with a plain spec, theirs import."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from services.store.datasets.annotations import SourceFormat
from services.store.datasets.request import ImportRequest
from services.store.datasets.storage import DatasetStore
from services.training.datasets import features as F
from services.training.datasets.importer import import_dataset
from services.training.synthetic import Scene
from services.vision.labelmap import load_label_map
from tests.datasets.fixtures import (
    SIZE,
    scenes,
    targz_folder,
    write_csv_dataset,
    write_folders_dataset,
    write_voc_dataset,
    zip_folder,
)

# The spec a TF OD API user would write (tf_example_decoder's keys), nothing of ours.
ODAPI_SPEC = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/format": tf.io.FixedLenFeature([], tf.string),
    "image/filename": tf.io.FixedLenFeature([], tf.string),
    "image/source_id": tf.io.FixedLenFeature([], tf.string),
    "image/key/sha256": tf.io.FixedLenFeature([], tf.string),
    "image/height": tf.io.FixedLenFeature([], tf.int64),
    "image/width": tf.io.FixedLenFeature([], tf.int64),
    "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
    "image/object/class/text": tf.io.VarLenFeature(tf.string),
    "image/object/class/label": tf.io.VarLenFeature(tf.int64),
    "image/object/difficult": tf.io.VarLenFeature(tf.int64),
    "image/object/truncated": tf.io.VarLenFeature(tf.int64),
    "image/class/text": tf.io.VarLenFeature(tf.string),
    "image/class/label": tf.io.VarLenFeature(tf.int64),
}


def parse_version(folder: Path) -> dict[str, dict]:
    """Every record of a version, parsed with the plain spec, by filename."""
    label_map = load_label_map(folder / "label_map.pbtxt")
    out = {}
    files = sorted(str(p) for p in folder.glob("*.tfrecord"))
    for raw in tf.data.TFRecordDataset(files):
        ex = tf.io.parse_single_example(raw, ODAPI_SPEC)
        dense = {
            k: tf.sparse.to_dense(v).numpy() if isinstance(v, tf.SparseTensor) else v.numpy() for k, v in ex.items()
        }
        name = dense["image/filename"].decode()
        image = tf.io.decode_image(dense["image/encoded"], channels=3).numpy()
        assert image.shape == (dense["image/height"], dense["image/width"], 3)
        texts = [t.decode() for t in dense["image/object/class/text"]]
        assert [label_map.id(t) for t in texts] == list(dense["image/object/class/label"])
        out[name] = {**dense, "texts": texts}
    return out


def boxes_px(record: dict) -> list[tuple[str, tuple[float, ...]]]:
    w, h = record["image/width"], record["image/height"]
    return [
        (text, (xmin * w, ymin * h, xmax * w, ymax * h))
        for text, xmin, ymin, xmax, ymax in zip(
            record["texts"],
            record["image/object/bbox/xmin"],
            record["image/object/bbox/ymin"],
            record["image/object/bbox/xmax"],
            record["image/object/bbox/ymax"],
            strict=True,
        )
    ]


def assert_same_boxes(records: dict[str, dict], items: list[Scene], names: list[str]) -> None:
    assert set(records) == set(names)
    for name, scene in zip(names, items, strict=True):
        got = boxes_px(records[name])
        want = [(o.label, o.box.as_tuple()) for o in scene.objects]
        assert [g[0] for g in got] == [w[0] for w in want]
        np.testing.assert_allclose([g[1] for g in got], [w[1] for w in want], atol=1e-3)


def test_voc_to_tfrecord_and_back_gives_the_same_boxes_and_labels(tmp_path: Path) -> None:
    items = scenes(count=12)
    names = [f"images/{n}" for n in write_voc_dataset(tmp_path / "src", items)]
    archive = zip_folder(tmp_path / "src", tmp_path / "voc.zip", prefix="labelimg/")
    result = import_dataset(
        ImportRequest(name="shapes", format=SourceFormat.VOC, source=archive, seed=3), DatasetStore(tmp_path / "data")
    )
    assert len(result.problems) == 0
    records = parse_version(result.path)
    assert_same_boxes(records, items, [f"labelimg/{n}" for n in names])
    manifest = result.manifest
    assert manifest.source.archive == "voc.zip" and manifest.kind == "detection"
    assert sum(c.images for c in manifest.counts.values()) == 12
    assert sum(c.boxes for c in manifest.counts.values()) == sum(len(s.objects) for s in items)
    for name, record in records.items():
        assert record["image/format"] == b"jpeg"
        assert record["image/source_id"].decode() == name
        assert list(record["image/class/text"]) == sorted({t.encode() for t in record["texts"]})
    for file, entry in manifest.files.items():
        assert len(entry.sha256) == 64 and (result.path / file).stat().st_size == entry.bytes
    assert manifest.record_files("train") == ["train-00000-of-00001.tfrecord"]


def test_csv_to_tfrecord_and_back(tmp_path: Path) -> None:
    items = scenes(seed=9, count=10)
    write_csv_dataset(tmp_path / "src", items)
    archive = targz_folder(tmp_path / "src", tmp_path / "csv.tar.gz")
    result = import_dataset(
        ImportRequest(name="csvset", format=SourceFormat.CSV, source=archive, split=0.7, test_split=0.1),
        DatasetStore(tmp_path / "data"),
    )
    assert len(result.problems) == 0
    assert set(result.manifest.counts) == {"train", "validation", "test"}
    assert_same_boxes(parse_version(result.path), items, [f"images/scene_{i:03d}.jpg" for i in range(10)])


def test_a_record_written_with_the_od_api_keys_imports(tmp_path: Path) -> None:
    """Records as the TF OD API's dataset tools write them: ids only (no class text), a label map beside them."""
    items = scenes(seed=4, count=6)
    src = tmp_path / "src"
    src.mkdir()
    (src / "label_map.pbtxt").write_text(
        "item {\n  id: 1\n  name: 'circle'\n}\nitem { id: 2 name: 'square' }\n"
        "item { id: 3 name: 'triangle' }\nitem { id: 4 name: 'cross' }\n"
    )
    ids = {"circle": 1, "square": 2, "triangle": 3, "cross": 4}
    with tf.io.TFRecordWriter(str(src / "pets_train.record-00000-of-00001")) as writer:
        for i, scene in enumerate(items):
            encoded = tf.io.encode_png(np.asarray(scene.image)).numpy()
            objs = scene.objects
            feature = {
                "image/height": tf.train.Feature(int64_list=tf.train.Int64List(value=[SIZE])),
                "image/width": tf.train.Feature(int64_list=tf.train.Int64List(value=[SIZE])),
                "image/filename": tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"img{i}.png".encode()])),
                "image/source_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(i).encode()])),
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
                "image/format": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"png"])),
                "image/object/bbox/xmin": tf.train.Feature(
                    float_list=tf.train.FloatList(value=[o.box.xmin / SIZE for o in objs])
                ),
                "image/object/bbox/xmax": tf.train.Feature(
                    float_list=tf.train.FloatList(value=[o.box.xmax / SIZE for o in objs])
                ),
                "image/object/bbox/ymin": tf.train.Feature(
                    float_list=tf.train.FloatList(value=[o.box.ymin / SIZE for o in objs])
                ),
                "image/object/bbox/ymax": tf.train.Feature(
                    float_list=tf.train.FloatList(value=[o.box.ymax / SIZE for o in objs])
                ),
                "image/object/class/label": tf.train.Feature(
                    int64_list=tf.train.Int64List(value=[ids[o.label] for o in objs])
                ),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    archive = zip_folder(src, tmp_path / "records.zip")
    result = import_dataset(
        ImportRequest(name="odapi", format=SourceFormat.TFRECORD, source=archive), DatasetStore(tmp_path / "data")
    )
    assert len(result.problems) == 0
    assert [c.name for c in result.manifest.classes] == ["circle", "square", "triangle", "cross"]  # their ids kept
    assert_same_boxes(parse_version(result.path), items, [f"img{i}.png" for i in range(6)])


def test_our_records_import_again_as_tfrecord(tmp_path: Path) -> None:
    items = scenes(seed=2, count=8)
    write_voc_dataset(tmp_path / "src", items)
    store = DatasetStore(tmp_path / "data")
    first = import_dataset(ImportRequest(name="a", format=SourceFormat.VOC, source=tmp_path / "src"), store)
    again = import_dataset(ImportRequest(name="b", format=SourceFormat.TFRECORD, source=first.path), store)
    assert len(again.problems) == 0
    one, two = parse_version(first.path), parse_version(again.path)
    assert set(one) == set(two)
    for name in one:
        assert boxes_px(one[name]) == boxes_px(two[name])
        assert one[name]["image/encoded"] == two[name]["image/encoded"]  # byte for byte


def test_folders_make_image_level_records_and_pools_keep_unlabelled_images(tmp_path: Path) -> None:
    items = scenes(seed=6, count=10, objects=(1, 1))
    labels = write_folders_dataset(tmp_path / "src" / "data", items)
    store = DatasetStore(tmp_path / "data")
    result = import_dataset(ImportRequest(name="cls", format=SourceFormat.FOLDERS, source=tmp_path / "src"), store)
    assert result.manifest.kind == "classification"
    records = parse_version(result.path)
    label_map = load_label_map(result.path / "label_map.pbtxt")
    for name, label in labels.items():
        record = records[f"data/{name}"]
        assert [t.decode() for t in record["image/class/text"]] == [label]
        assert list(record["image/class/label"]) == [label_map.id(label)]
        assert len(record["image/object/bbox/xmin"]) == 0

    scenes(seed=99, count=1)[0].image.save(tmp_path / "src" / "data" / "unlabelled.jpg")
    pool = import_dataset(
        ImportRequest(name="pool", format=SourceFormat.FOLDERS, source=tmp_path / "src", pool=True), store
    )
    assert pool.manifest.kind == "pool" and list(pool.manifest.counts) == ["pool"]
    assert pool.manifest.counts["pool"].images == 11 and pool.manifest.counts["pool"].background_images == 1


def test_class_not_in_the_given_label_map_and_label_map_ids_kept(tmp_path: Path) -> None:
    items = scenes(seed=8, count=8)
    write_voc_dataset(tmp_path / "src", items)
    label_map = tmp_path / "map.pbtxt"
    label_map.write_text("item { id: 3 name: 'circle' }\nitem { id: 7 name: 'square' }\n")
    result = import_dataset(
        ImportRequest(name="m", format=SourceFormat.VOC, source=tmp_path / "src", label_map=label_map),
        DatasetStore(tmp_path / "data"),
    )
    unknown = [p for p in result.problems.problems if p.code == "unknown_class"]
    expected = sum(o.label not in ("circle", "square") for s in items for o in s.objects)
    assert len(unknown) == expected and all(p.file.startswith("annotations/") for p in unknown)
    assert [(c.id, c.name) for c in result.manifest.classes] == [(3, "circle"), (7, "square")]
    for record in parse_version(result.path).values():
        assert set(record["texts"]) <= {"circle", "square"}


def test_a_corrupt_record_file_refuses_the_import(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "x.tfrecord").write_bytes(b"\x00" * 40)
    data = tmp_path / "data"
    with pytest.raises(Exception) as refused:
        import_dataset(ImportRequest(name="c", format=SourceFormat.TFRECORD, source=src), DatasetStore(data))
    assert "corrupt_record" in str(refused.value.details)
    assert not data.exists()


def test_feature_keys_are_the_od_apis() -> None:
    assert F.XMIN == "image/object/bbox/xmin" and F.OBJECT_LABEL == "image/object/class/label"
    assert F.shard_name("train", 0, 2) == "train-00000-of-00002.tfrecord"
