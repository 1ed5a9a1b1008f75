"""Training at the serving scale: where native-scale crops go (every object fully inside one of them, background crops
at the set ratio), what a crop holds (the image's own pixels and boxes, no resize), batches from poster records, and
``views`` recorded by the export (``spotter.json``) and followed by the evaluation (the gateway's views)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from services.store.datasets.annotations import SourceFormat
from services.store.datasets.request import ImportRequest
from services.store.datasets.storage import DatasetStore
from services.training.crops import MAX_CROPS, crops_per_pass, cut_crops, plan_crops, scan_split, tiles_dataset
from services.training.datasets.importer import import_dataset
from services.training.detector import DetectorConfig, build_detector
from services.training.export import DetectorModule, export_detector
from services.training.scoring import Example, export_predictor, version_views, view_detector
from services.training.synthetic import CLASSES, generate_posters
from services.vision.tiling import plan_views
from tests.datasets.fixtures import write_voc_with_label_map


def _boxes(width: int, height: int, pixels: list[tuple[float, float, float, float]]) -> tuple[tf.Tensor, tf.Tensor]:
    """(xmin, ymin, xmax, ymax) pixel boxes -> normalised ``ymin, xmin, ymax, xmax`` rows padded to 10, classes."""
    rows = np.zeros((10, 4), np.float32)
    classes = np.zeros(10, np.int32)
    for i, (x0, y0, x1, y1) in enumerate(pixels):
        rows[i] = (y0 / height, x0 / width, y1 / height, x1 / width)
        classes[i] = 1 + i % 4
    return tf.constant(rows), tf.constant(classes)


@pytest.mark.parametrize("seed", range(12))
def test_every_object_lies_fully_inside_its_crop_and_crops_stay_in_the_image(seed: int) -> None:
    poster = next(generate_posters(100 + seed, 1, clutter=10))
    width, height = poster.image.size
    boxes = [(o.box.xmin, o.box.ymin, o.box.xmax, o.box.ymax) for o in poster.objects]
    rows, classes = _boxes(width, height, boxes)
    size = 256
    offsets = plan_crops(rows, classes, height, width, tf.constant([seed, 0]), size=size, background_ratio=0.5).numpy()
    assert len(offsets) == len(boxes) + round(len(boxes) * 0.5 / 0.5)
    assert (offsets >= 0).all() and (offsets[:, 0] <= height - size).all() and (offsets[:, 1] <= width - size).all()
    for x0, y0, x1, y1 in boxes:
        inside = [(oy <= y0 and y1 <= oy + size and ox <= x0 and x1 <= ox + size) for oy, ox in offsets]
        assert any(inside), f"object {(x0, y0, x1, y1)} is in no crop of {offsets.tolist()}"


def test_object_crops_move_between_visits_and_background_follows_the_ratio() -> None:
    rows, classes = _boxes(2000, 1300, [(1000, 600, 1030, 640)])
    seen = {
        tuple(plan_crops(rows, classes, 1300, 2000, tf.constant([s, 1]), size=320, background_ratio=0.0).numpy()[0])
        for s in range(8)
    }
    assert len(seen) > 4  # at several offsets, each holding the object
    for ratio, expected in ((0.0, 1), (0.25, 1), (0.75, 4), (0.9, 10)):
        got = plan_crops(rows, classes, 1300, 2000, tf.constant([1, 1]), size=320, background_ratio=ratio)
        assert len(got) == expected, (ratio, got)
    empty = plan_crops(
        tf.zeros([10, 4]), tf.zeros([10], tf.int32), 1300, 2000, tf.constant([1, 1]), size=320, background_ratio=0.0
    )
    assert len(empty) == 1  # an image without objects still gives one background crop


def test_crops_are_the_images_own_pixels_and_boxes_and_are_bounded() -> None:
    """A 4000x3000 record is decoded once and cut; a crop is a plain slice (native scale), padded past the edge."""
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (3000, 4000, 3), dtype=np.uint8)
    many = [(x, 100.0 + (x % 7) * 300, x + 30.0, 130.0 + (x % 7) * 300) for x in np.linspace(10, 3900, 80)]
    rows = np.zeros((100, 4), np.float32)
    cls = np.zeros(100, np.int32)
    for i, (x0, y0, x1, y1) in enumerate(many):
        rows[i] = (y0 / 3000, x0 / 4000, y1 / 3000, x1 / 4000)
        cls[i] = 1
    example = {
        "image": tf.constant(image),
        "boxes": tf.constant(rows),
        "classes": tf.constant(cls),
        "height": 3000,
        "width": 4000,
    }
    crops = cut_crops(example, tf.constant([5, 5]), size=320, background_ratio=0.5, min_visible=0.5)
    assert crops["image"].shape[0] == MAX_CROPS  # 80 objects: capped, memory bounded
    for k in range(3):
        oy, ox = crops["offsets"][k].numpy()
        np.testing.assert_array_equal(crops["image"][k].numpy(), image[oy : oy + 320, ox : ox + 320])
        kept = crops["classes"][k].numpy() > 0
        assert kept.any()
        b = crops["boxes"][k].numpy()[kept][0] * 320  # an object at its own size in the crop
        assert abs((b[3] - b[1]) - 30.0) < 1e-3
    small = {
        "image": tf.constant(image[:200, :300]),
        "boxes": tf.constant(rows),
        "classes": tf.zeros(100, tf.int32),
        "height": 200,
        "width": 300,
    }
    padded = cut_crops(small, tf.constant([1, 1]), size=320, background_ratio=0.0, min_visible=0.5)["image"][0].numpy()
    np.testing.assert_array_equal(padded[:200, :300], image[:200, :300])
    assert not padded[200:].any() and not padded[:, 300:].any()


@pytest.fixture(scope="module")
def posters(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A poster dataset (6 train, 3 validation, 900x600 with 20-45 px targets); the data folder."""
    base = tmp_path_factory.mktemp("posters")
    items = list(generate_posters(31, 9, width=900, height=600, clutter=80))
    write_voc_with_label_map(base / "voc", items, list(CLASSES))
    request = ImportRequest(name="posters", format=SourceFormat.VOC, source=base / "voc", split=0.67, seed=1)
    import_dataset(request, DatasetStore(base / "data"))
    return base / "data"


def test_tiles_dataset_gives_crop_batches_with_targets(posters: Path) -> None:
    store = DatasetStore(posters)
    manifest = store.manifest("posters", None)
    files = [store.path("posters", manifest.version) / f for f in manifest.record_files("train")]
    sizes = scan_split(files)
    assert all((w, h) == (900, 600) for w, h, _ in sizes) and all(3 <= len(b) <= 6 for _, _, b in sizes)
    assert crops_per_pass(sizes, 0.5) == 2 * sum(len(b) for _, _, b in sizes)
    ds = tiles_dataset(files, crop_size=128, batch_size=4, stride=4, num_classes=4, seed=2, background_ratio=0.5)
    objects = 0
    for images, targets in ds.take(6):
        assert images.shape == (4, 128, 128, 3)
        objects += int(tf.reduce_sum(targets[..., -1]))  # the mask: 1 at object centres
    assert objects > 0


def test_a_tiles_export_records_its_views_and_is_scored_through_the_gateways_views(
    posters: Path, tmp_path: Path
) -> None:
    config = DetectorConfig(
        classes=CLASSES,
        input_size=128,
        alpha=0.35,
        max_detections=20,
        views="tiles",
        crop_size=128,
        object_size_px=(20.0, 45.0),
    )
    model = build_detector(config, pretrained=False)
    export_detector(model, config, tmp_path / "1", model_name="posters")
    info = json.loads((tmp_path / "1" / "assets.extra" / "spotter.json").read_text())
    assert (info["views"], info["crop_size"], info["object_size_px"]) == ("tiles", 128, [20.0, 45.0])
    assert info["detector"]["views"] == "tiles" and version_views(tmp_path / "1") == "tiles"
    assert version_views(tmp_path / "nothing") == "whole"  # a foreign model

    poster = next(generate_posters(77, 1, width=700, height=400, clutter=40))

    buffer = io.BytesIO()
    poster.image.save(buffer, format="JPEG", quality=92)
    example = Example("p.jpg", buffer.getvalue(), 700, 400, (), None)
    loaded = tf.saved_model.load(str(tmp_path / "1"))
    calls: list[int] = []
    serve = loaded.signatures["serving_default"]

    def counting(images: tf.Tensor) -> dict[str, tf.Tensor]:
        calls.append(int(images.shape[0]))
        return serve(images=images)

    view_detector(counting, 128, CLASSES, CLASSES, views="tiles")([example])
    assert sum(calls) == len(plan_views(700, 400, 128, "auto", views="tiles", max_tiles=32)) > 1
    kind, _ = export_predictor(loaded, CLASSES, "tiles")
    assert kind == "detector"
    module = DetectorModule(model, config)
    assert module.config.model_views.views == "tiles"
