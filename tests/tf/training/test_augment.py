"""Box-aware augmentation keeps boxes on the pixels they label: checked on images with one bright rectangle."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from services.training.augment import AugmentConfig, augment, flip_left_right, scale_and_crop


def _image_with_rectangle(h: int, w: int, box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A dark image with a white rectangle (pixel rows y0..y1, columns x0..x1) and its normalised box."""
    y0, x0, y1, x1 = box
    image = np.full((h, w, 3), 20, np.uint8)
    image[y0:y1, x0:x1] = 255
    return image, np.array([[y0 / h, x0 / w, y1 / h, x1 / w]], np.float32)


def _bright_box(image: np.ndarray, threshold: float = 128) -> np.ndarray:
    """The normalised box of the bright pixels: what the label should cover."""
    ys, xs = np.nonzero(image.mean(axis=-1) > threshold)
    h, w = image.shape[:2]
    return np.array([ys.min() / h, xs.min() / w, (ys.max() + 1) / h, (xs.max() + 1) / w])


def test_flip_moves_the_box_with_the_pixels() -> None:
    image, boxes = _image_with_rectangle(64, 96, (10, 5, 30, 25))
    flipped, fboxes = flip_left_right(tf.constant(image), tf.constant(boxes))
    np.testing.assert_allclose(fboxes.numpy()[0], _bright_box(flipped.numpy()), atol=1e-6)


@pytest.mark.parametrize(("scale", "offset"), [(1.0, (8, 16)), (1.25, (20, 30)), (0.75, (-10, -6)), (0.5, (0, 0))])
def test_scale_and_crop_keeps_the_box_on_the_pixels(scale: float, offset: tuple[int, int]) -> None:
    image, boxes = _image_with_rectangle(96, 96, (30, 40, 54, 70))
    window, wboxes, classes = scale_and_crop(
        tf.constant(image),
        tf.constant(boxes),
        tf.constant([1]),
        scale=tf.constant(scale),
        offset=tf.constant(offset),
        size=64,
    )
    assert window.shape == (64, 64, 3)
    assert classes.numpy().tolist() == [1]
    # Within a pixel (resampling blurs the rectangle's edges by at most one pixel).
    np.testing.assert_allclose(wboxes.numpy()[0], _bright_box(window.numpy()), atol=1.01 / 64)


def test_objects_mostly_cut_off_are_dropped_and_partly_cut_ones_clipped() -> None:
    image = np.full((96, 96, 3), 20, np.uint8)
    boxes = np.array([[0.0, 0.0, 0.2, 0.2], [0.3, 0.55, 0.5, 0.75]], np.float32)  # 0..19 px and 29..48 x 53..72
    # Window rows/cols 16..80: the first object keeps 3 of 19 px per side (dropped); the second stays whole.
    _, out, classes = scale_and_crop(
        tf.constant(image),
        tf.constant(boxes),
        tf.constant([1, 2]),
        scale=tf.constant(1.0),
        offset=tf.constant([16, 16]),
        size=64,
        min_visible=0.5,
    )
    assert classes.numpy().tolist() == [0, 2]
    assert not out.numpy()[0].any()
    # Half of an object cut off: clipped to the window.
    _, out, classes = scale_and_crop(
        tf.constant(image),
        tf.constant(np.array([[0.4, 0.0, 0.6, 0.4]], np.float32)),
        tf.constant([3]),
        scale=tf.constant(1.0),
        offset=tf.constant([0, 19]),
        size=64,
        min_visible=0.5,
    )
    assert classes.numpy().tolist() == [3]
    np.testing.assert_allclose(out.numpy()[0], [0.6, 0.0, 0.9, (38.4 - 19) / 64], atol=1e-5)


@pytest.mark.parametrize("n", range(6))
def test_random_augmentation_keeps_boxes_right(n: int) -> None:
    image, boxes = _image_with_rectangle(128, 128, (40, 50, 70, 90))
    config = AugmentConfig(brightness=0.0, contrast=(1.0, 1.0), scale_range=(0.8, 1.25), min_visible=0.99)
    seed = tf.constant([7, n], tf.int64)
    out, oboxes, classes = augment(
        tf.constant(image), tf.constant(boxes), tf.constant([1]), seed, size=96, config=config
    )
    if classes.numpy()[0] == 0:
        pytest.skip("this seed's crop cuts the object; another case covers crops")
    np.testing.assert_allclose(oboxes.numpy()[0], _bright_box(out.numpy()), atol=1.01 / 96)


def test_augmentation_is_a_function_of_the_seed() -> None:
    image, boxes = _image_with_rectangle(128, 128, (40, 50, 70, 90))
    seed = tf.constant([1, 2], tf.int64)
    a = augment(tf.constant(image), tf.constant(boxes), tf.constant([1]), seed, size=96, config=AugmentConfig())
    b = augment(tf.constant(image), tf.constant(boxes), tf.constant([1]), seed, size=96, config=AugmentConfig())
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.numpy(), y.numpy())


def test_colour_jitter_leaves_boxes_alone_and_stays_in_range() -> None:
    image, boxes = _image_with_rectangle(96, 96, (10, 10, 40, 40))
    config = AugmentConfig(flip=False, scale_range=(1.0, 1.0), brightness=0.3, contrast=(0.5, 1.5))
    out, oboxes, _ = augment(
        tf.constant(image), tf.constant(boxes), tf.constant([1]), tf.constant([3, 4], tf.int64), size=96, config=config
    )
    assert float(tf.reduce_min(out)) >= 0.0 and float(tf.reduce_max(out)) <= 255.0
    np.testing.assert_allclose(oboxes.numpy(), boxes, atol=1e-6)
