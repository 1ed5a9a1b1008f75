from __future__ import annotations

import numpy as np
import pytest

from services.errors import InvalidParameter
from services.vision.tiling import Tile, plan_tiles, plan_views, wants_tiling


def coverage(width: int, height: int, tiles: list[Tile]) -> np.ndarray:
    covered = np.zeros((height, width), dtype=np.int32)
    for t in tiles:
        assert t.x >= 0 and t.y >= 0 and t.x + t.width <= width and t.y + t.height <= height
        covered[t.y : t.y + t.height, t.x : t.x + t.width] += 1
    return covered


@pytest.mark.parametrize(
    ("width", "height", "mode", "expected"),
    [
        (640, 640, "auto", False),  # shrunk 2x: not more than the factor
        (641, 300, "auto", True),
        (300, 2000, "auto", True),
        (100, 100, "on", True),
        (5000, 5000, "off", False),
    ],
)
def test_wants_tiling(width: int, height: int, mode: str, expected: bool) -> None:
    assert wants_tiling(width, height, 320, mode) is expected  # type: ignore[arg-type]


def test_wants_tiling_auto_factor_and_bad_mode() -> None:
    assert wants_tiling(1000, 500, 320, "auto", auto_factor=3.0) is True
    assert wants_tiling(900, 500, 320, "auto", auto_factor=3.0) is False
    with pytest.raises(InvalidParameter, match="auto, on, off"):
        wants_tiling(1000, 1000, 320, "sometimes")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("width", "height"), [(2800, 1760), (1920, 1080), (321, 321), (640, 480), (3000, 200), (200, 3000), (977, 653)]
)
def test_tiles_cover_every_pixel_evenly_with_overlap(width: int, height: int) -> None:
    tiles = plan_tiles(width, height, 320, overlap=0.25, max_tiles=1000)
    assert (coverage(width, height, tiles) >= 1).all()
    assert {(t.width, t.height) for t in tiles} == {(min(320, width), min(320, height))}
    xs = sorted({t.x for t in tiles})
    ys = sorted({t.y for t in tiles})
    assert xs[0] == 0 and ys[0] == 0
    assert xs[-1] + tiles[0].width == width and ys[-1] + tiles[0].height == height  # flush with the far edges
    for starts in (xs, ys):
        steps = np.diff(starts)
        if steps.size:
            assert steps.max() - steps.min() <= 1  # evenly spread
            assert steps.max() <= 320 * 0.75 + 0.5  # at least a quarter of a tile shared
    assert len(tiles) == len(xs) * len(ys)  # a grid, row by row
    assert tiles == sorted(tiles, key=lambda t: (t.y, t.x))


def test_an_image_no_larger_than_a_tile_is_one_tile() -> None:
    assert plan_tiles(300, 200, 320) == [Tile(0, 0, 300, 200)]
    assert plan_tiles(320, 320, 320) == [Tile(0, 0, 320, 320)]


@pytest.mark.parametrize(("width", "height", "max_tiles"), [(10000, 10000, 64), (8000, 600, 4), (5000, 3000, 1)])
def test_tiles_grow_to_respect_max_tiles(width: int, height: int, max_tiles: int) -> None:
    tiles = plan_tiles(width, height, 320, max_tiles=max_tiles)
    assert 1 <= len(tiles) <= max_tiles
    assert (coverage(width, height, tiles) >= 1).all()
    grown = max(tiles[0].width, tiles[0].height)
    assert grown > 320
    # The smallest size that fits: one pixel less would need more tiles.
    assert len(plan_tiles(width, height, grown - 1, max_tiles=10**9)) > max_tiles


def test_plan_tiles_refuses_nonsense() -> None:
    for kwargs in [{"overlap": 1.0}, {"overlap": -0.1}, {"max_tiles": 0}]:
        with pytest.raises(ValueError):
            plan_tiles(1000, 1000, 320, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        plan_tiles(0, 10, 320)


def test_plan_views_adds_the_whole_image_last() -> None:
    whole = Tile(0, 0, 2800, 1760)
    views = plan_views(2800, 1760, 320, "auto")
    assert views[-1] == whole
    assert views[:-1] == plan_tiles(2800, 1760, 320)
    assert plan_views(2800, 1760, 320, "off") == [whole]
    assert plan_views(300, 200, 320, "on") == [Tile(0, 0, 300, 200)]  # one tile would be the whole image
    assert whole.region == (0, 0, 2800, 1760)
