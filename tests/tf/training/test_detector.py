"""The detector builder: backbones, widths and sizes; output layout; config checks."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from services.training.detector import DetectorConfig, build_detector


@pytest.mark.parametrize(
    ("backbone", "alpha", "size"),
    [("mobilenet_v2", 0.35, 96), ("mobilenet_v2", 0.5, 128), ("mobilenet_v3_small", 0.75, 96)],
)
def test_builds_for_backbones_widths_and_sizes(backbone: str, alpha: float, size: int) -> None:
    config = DetectorConfig(classes=("a", "b", "c"), input_size=size, backbone=backbone, alpha=alpha)
    model = build_detector(config)
    out = model(np.zeros((2, size, size, 3), np.float32))
    assert tuple(out.shape) == (2, size // 4, size // 4, 3 + 4)
    # The spatial size is free: training crops can be smaller than the serving canvas.
    assert tuple(model(np.zeros((1, 64, 96, 3), np.float32)).shape) == (1, 16, 24, 7)


def test_fixed_size_twin_takes_the_same_weights() -> None:
    config = DetectorConfig(classes=("a",), input_size=96)
    free = build_detector(config)
    fixed = build_detector(config, fixed_size=True, pretrained=False)
    assert fixed.input_shape == (None, 96, 96, 3)
    fixed.set_weights(free.get_weights())
    x = np.random.default_rng(0).uniform(0, 255, (1, 96, 96, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(free(x)), np.asarray(fixed(x)), atol=1e-5)


def test_stride_8_head() -> None:
    config = DetectorConfig(classes=("a",), input_size=128, stride=8)
    assert tuple(build_detector(config)(np.zeros((1, 128, 128, 3), np.float32)).shape) == (1, 16, 16, 5)


def test_from_scratch_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="services.training.detector"):
        build_detector(DetectorConfig(classes=("a",), input_size=96))
    assert any("from scratch" in r.getMessage() for r in caplog.records)


def test_missing_weights_file_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FileNotFoundError, match="weights file"):
        build_detector(DetectorConfig(classes=("a",), input_size=96, weights=str(tmp_path / "nope.h5")))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"classes": ()},
        {"classes": ("a",), "input_size": 100},
        {"classes": ("a",), "backbone": "resnet"},
        {"classes": ("a",), "stride": 2},
    ],
)
def test_bad_configs_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        DetectorConfig(**kwargs)  # type: ignore[arg-type]


def test_config_round_trips_through_a_dict() -> None:
    config = DetectorConfig(classes=("a", "b"), input_size=160, alpha=0.5)
    assert DetectorConfig.from_dict(config.to_dict()) == config
