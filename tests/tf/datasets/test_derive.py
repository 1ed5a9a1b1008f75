"""A version derived from another (active learning's next round): validation unchanged, train grown."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from services.store.datasets.annotations import ObjectAnnotation, SourceFormat
from services.store.datasets.request import ImportRequest
from services.store.datasets.storage import DatasetStore
from services.store.datasets.validate import ImageProblem, valid_image_from_bytes
from services.training.datasets.derive import derive_version, read_version_images
from services.training.datasets.importer import import_dataset
from services.vision.boxes import Box
from tests.datasets.fixtures import scenes, write_voc_dataset


def _jpeg(seed: int) -> tuple[bytes, list[ObjectAnnotation]]:
    scene = scenes(seed=seed, count=1)[0]
    out = io.BytesIO()
    scene.image.save(out, format="JPEG")
    return out.getvalue(), [ObjectAnnotation(o.label, o.box) for o in scene.objects]


def test_a_derived_version_keeps_validation_and_adds_to_train(tmp_path: Path) -> None:
    write_voc_dataset(tmp_path / "src", scenes(count=10))
    store = DatasetStore(tmp_path / "data")
    first = import_dataset(ImportRequest(name="shapes", format=SourceFormat.VOC, source=tmp_path / "src"), store)
    before = read_version_images(first.path, first.manifest)

    new = [valid_image_from_bytes(f"accepted/{i}.jpg", *_jpeg(100 + i)) for i in range(3)]
    duplicate = before["train"][0]
    derived = derive_version(store, "shapes", {"train": [*new, duplicate]})
    assert derived.manifest.version == 2 and derived.manifest.source.derived_from == "shapes/1"
    assert [p.code for p in derived.problems.problems] == ["duplicate_image"]
    after = read_version_images(derived.path, derived.manifest)
    assert [i.sha256 for i in after["validation"]] == [i.sha256 for i in before["validation"]]
    assert len(after["train"]) == len(before["train"]) + 3
    assert derived.manifest.split == first.manifest.split
    assert [c.name for c in derived.manifest.classes] == [c.name for c in first.manifest.classes]
    for image in after["train"][-3:]:
        assert image.filename.startswith("accepted/") and image.objects


def test_accepted_examples_are_checked() -> None:
    data, _ = _jpeg(1)
    image = valid_image_from_bytes("a.jpg", data, [ObjectAnnotation("circle", Box(-4, 10, 50, 60))])
    assert image.objects[0].box == Box(0, 10, 50, 60) and image.labels == ["circle"]
    with pytest.raises(ImageProblem):
        valid_image_from_bytes("b.jpg", data, [ObjectAnnotation("circle", Box(50, 10, 5, 60))])
    with pytest.raises(ImageProblem):
        valid_image_from_bytes("c.jpg", b"nope")
