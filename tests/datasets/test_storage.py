"""Versioned storage: versions appear whole or not at all, failures leave nothing, manifests read without TF."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from services.errors import DatasetNotFound, InvalidParameter
from services.store.datasets.annotations import DatasetKind, SourceFormat
from services.store.datasets.manifest import (
    ClassCounts,
    ClassEntry,
    FileEntry,
    Manifest,
    SourceInfo,
    SplitCounts,
    SplitInfo,
    now_iso,
    write_manifest,
)
from services.store.datasets.storage import DatasetStore, check_name
from tests.datasets.fixtures import tree


def _manifest(name: str, version: int) -> Manifest:
    return Manifest(
        name=name,
        version=version,
        kind=DatasetKind.DETECTION,
        created=now_iso(),
        source=SourceInfo(format=SourceFormat.VOC, archive="a.zip", archive_sha256="0" * 64),
        split=SplitInfo(ratios={"train": 0.8, "validation": 0.2}, seed=0),
        classes=[ClassEntry(id=1, name="cat")],
        counts={
            "train": SplitCounts(images=4, boxes=5, per_class={"cat": ClassCounts(images=4, boxes=5)}),
            "validation": SplitCounts(images=1, boxes=1, per_class={"cat": ClassCounts(images=1, boxes=1)}),
        },
        files={"train-00000-of-00001.tfrecord": FileEntry(sha256="1" * 64, bytes=10, split="train", records=4)},
    )


def _publish(store: DatasetStore, name: str) -> int:
    with store.staging(name, token="job1") as staging:
        out = staging / "version"
        out.mkdir()
        (out / "train-00000-of-00001.tfrecord").write_bytes(b"x" * 10)
        version, _ = store.publish(out, name, lambda folder, v: write_manifest(folder, _manifest(name, v)))
    return version


def test_versions_count_from_one_and_manifests_read_back(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path / "data")
    assert store.names() == []
    assert [_publish(store, "cats") for _ in range(3)] == [1, 2, 3]
    assert store.versions("cats") == [1, 2, 3] and store.latest("cats") == 3 and store.names() == ["cats"]
    manifest = store.manifest("cats")
    assert manifest.version == 3
    assert manifest.summary_rows() == [
        {"id": 1, "name": "cat", "train": {"images": 4, "boxes": 5}, "validation": {"images": 1, "boxes": 1}}
    ]
    assert store.manifest("cats", 1).version == 1
    assert [m.version for m in store.manifests("cats")] == [1, 2, 3]
    assert tree(store.root / "cats") == [
        *(f"{v}/" for v in ("1",)),
        "1/manifest.json",
        "1/train-00000-of-00001.tfrecord",
        "2/",
        "2/manifest.json",
        "2/train-00000-of-00001.tfrecord",
        "3/",
        "3/manifest.json",
        "3/train-00000-of-00001.tfrecord",
    ]


def test_unknown_datasets_and_versions(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path)
    with pytest.raises(DatasetNotFound):
        store.manifest("nope")
    _publish(store, "cats")
    with pytest.raises(DatasetNotFound):
        store.manifest("cats", 7)


def test_a_failure_while_staging_leaves_the_data_folder_as_it_was(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = DatasetStore(data)
    with pytest.raises(RuntimeError), store.staging("cats") as staging:
        (staging / "half.tfrecord").write_bytes(b"half")
        raise RuntimeError("disk full")
    assert tree(data) == []  # not even the folders the staging created

    _publish(store, "dogs")
    before = tree(data)
    with pytest.raises(RuntimeError), store.staging("dogs") as staging:
        (staging / "version").mkdir()
        raise RuntimeError("killed")
    assert tree(data) == before


def test_concurrent_publishes_get_different_versions(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path)
    barrier = threading.Barrier(4)
    versions: list[int] = []

    def publish() -> None:
        with store.staging("race") as staging:
            out = staging / "version"
            out.mkdir()

            first = [True]

            def finalize(folder: Path, version: int) -> None:
                if first[0]:  # everyone picked the same number: the renames collide, the losers retry
                    first[0] = False
                    barrier.wait(timeout=10)
                write_manifest(folder, _manifest("race", version))

            versions.append(store.publish(out, "race", finalize)[0])

    threads = [threading.Thread(target=publish) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(versions) == [1, 2, 3, 4]
    assert [store.manifest("race", v).version for v in (1, 2, 3, 4)] == [1, 2, 3, 4]


def test_staging_folders_of_a_job_and_stale_ones_can_be_removed(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path)
    _publish(store, "cats")
    left = store.root / "cats" / ".tmp-job9-abc"
    left.mkdir()
    assert store.remove_staging("job9") == 1 and not left.exists()
    old = store.root / "cats" / ".tmp-old"
    old.mkdir()
    young = store.root / "cats" / ".tmp-young"
    young.mkdir()
    os.utime(old, (time.time() - 10 * 3600,) * 2)
    assert store.remove_stale_staging(6 * 3600) == 1
    assert not old.exists() and young.exists()
    assert store.versions("cats") == [1]  # staging folders are never versions


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "..", "a..b", "x" * 65, "spaces here", "-dash"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidParameter):
        check_name(name)


def test_good_names() -> None:
    for name in ("cats", "Wally_2", "road.v1", "a-b"):
        assert check_name(name) == name
