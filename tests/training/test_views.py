"""How a model sees an image: the gateway's ``tile=auto`` follows it, ``views: auto`` decides it from the data, and a
version's ``spotter.json`` records it (foreign models are ``whole``)."""

from __future__ import annotations

import pytest

from services.training.synthetic import POSTER, generate_scenes
from services.training.views import choose_views, size_stats
from services.vision.tiling import ModelViews, plan_views, wants_tiling


@pytest.mark.parametrize(
    ("width", "height", "views", "expected"),
    [
        (1920, 1080, "whole", False),  # an ordinary photo to a whole-image model: never cut into 32 tiles
        (5000, 4000, "whole", False),
        (321, 200, "tiles", True),  # larger than one view
        (320, 320, "tiles", False),
        (641, 300, None, True),  # no views known: the size rule
        (600, 300, None, False),
    ],
)
def test_auto_follows_the_models_views(width: int, height: int, views: str | None, expected: bool) -> None:
    assert wants_tiling(width, height, 320, "auto", views=views) is expected  # type: ignore[arg-type]
    assert wants_tiling(width, height, 320, "on", views="whole") is True  # the client can still ask
    assert wants_tiling(width, height, 320, "off", views="tiles") is False


def test_a_tiles_model_sees_a_poster_through_tiles_and_the_whole_image() -> None:
    views = plan_views(2000, 1300, 320, "auto", views="tiles", max_tiles=32)
    assert len(views) > 1 and views[-1].region == (0, 0, 2000, 1300)
    assert len(plan_views(2000, 1300, 320, "auto", views="whole", max_tiles=32)) == 1


def test_model_views_from_spotter_json() -> None:
    assert ModelViews.from_metadata({}) == ModelViews("whole")
    assert ModelViews.from_metadata({"views": "mosaic"}).views == "whole"
    recorded = ModelViews("tiles", 320, (20.0, 45.0)).to_metadata()
    assert recorded == {"views": "tiles", "crop_size": 320, "object_size_px": [20.0, 45.0]}
    assert ModelViews.from_metadata(recorded) == ModelViews("tiles", 320, (20.0, 45.0))


def _sizes(
    scenes: list,
) -> list[tuple[int, int, list[tuple[float, float]]]]:
    return [(*s.image.size, [(o.box.xmax - o.box.xmin, o.box.ymax - o.box.ymin) for o in s.objects]) for s in scenes]


def test_views_auto_picks_tiles_for_posters_and_whole_for_scenes() -> None:
    posters = _sizes(list(generate_scenes(1, 3, **{**POSTER, "clutter": 5})))
    views, why = choose_views(size_stats(posters, 320), 320, 320)
    assert views == "tiles" and "px once letterboxed to 320" in why, why
    stats = size_stats(posters, 320)
    assert stats.object_side_range is not None and 18 <= stats.object_side_range[0] <= stats.object_side_range[1] <= 46
    scenes = _sizes(list(generate_scenes(1, 3, clutter=2)))  # 320 px scenes, 14-40 px objects
    assert choose_views(size_stats(scenes, 320), 320, 320)[0] == "whole"
    # Large photos with large objects stay whole: letterboxing keeps them big enough.
    photos = [(1920, 1080, [(400.0, 300.0)])] * 3
    views, why = choose_views(size_stats(photos, 320), 320, 320)
    assert views == "whole" and "at least" in why
    assert choose_views(size_stats([(2000, 1300, [])], 320), 320, 320)[0] == "whole"
