"""Box-aware augmentation, in TensorFlow, with stateless per-example seeds.

Every operation takes a ``seed`` (int32 ``[2]``) and is a pure function of it, so the pipeline's output does not
depend on how many threads ran it: example ``i`` of a run seeded ``s`` is augmented the same way every time.
Boxes are ``[M, 4]`` ``ymin, xmin, ymax, xmax`` normalised to the image; ``classes`` ``[M]`` with 0 as padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf


@dataclass(frozen=True, slots=True)
class AugmentConfig:
    """How hard to augment.

    Attributes:
        flip: Flip left-right with probability 0.5.
        scale_range: The image is resized by a factor drawn from this range before the crop: small objects stay small
            (0.75 of 14 px is still over 10 px), a little zoom-out teaches the zero padding of letterboxed canvases.
        min_visible: An object cut by the crop keeps its (clipped) box if at least this fraction of it stays visible,
            and is dropped otherwise.
        brightness: Largest brightness shift, as a fraction of 255.
        contrast: Contrast factor range.
    """

    flip: bool = True
    scale_range: tuple[float, float] = (0.75, 1.3)
    min_visible: float = 0.5
    brightness: float = 0.15
    contrast: tuple[float, float] = (0.7, 1.3)


def flip_left_right(image: tf.Tensor, boxes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Mirror the image and its boxes (``x -> 1 - x``)."""
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    return tf.image.flip_left_right(image), tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=-1)


def random_flip(image: tf.Tensor, boxes: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """:func:`flip_left_right` with probability 0.5."""
    coin = tf.random.stateless_uniform([], seed) < 0.5
    flipped, moved = tf.cond(coin, lambda: flip_left_right(image, boxes), lambda: (image, boxes))
    return flipped, moved


def scale_and_crop(
    image: tf.Tensor,
    boxes: tf.Tensor,
    classes: tf.Tensor,
    *,
    scale: tf.Tensor,
    offset: tf.Tensor,
    size: int,
    min_visible: float = 0.5,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Resize by ``scale``, then take the ``size x size`` window whose top-left corner is at ``offset`` (y, x) pixels
    of the resized image; a window reaching past the image is padded with zeros.

    Returns:
        The float32 window, the boxes normalised to it (clipped), and the classes, 0 for objects that fell out.
    """
    shape = tf.shape(image)
    new_h = tf.maximum(tf.cast(tf.round(tf.cast(shape[0], tf.float32) * scale), tf.int32), 1)
    new_w = tf.maximum(tf.cast(tf.round(tf.cast(shape[1], tf.float32) * scale), tf.int32), 1)
    resized = tf.image.resize(tf.cast(image, tf.float32), tf.stack([new_h, new_w]), antialias=True)
    return crop_window(resized, boxes, classes, offset=offset, size=size, min_visible=min_visible)


def crop_window(
    image: tf.Tensor,
    boxes: tf.Tensor,
    classes: tf.Tensor,
    *,
    offset: tf.Tensor,
    size: int,
    min_visible: float = 0.5,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The ``size x size`` window of ``image`` whose top-left corner is at ``offset`` (y, x) pixels, at the image's
    own scale; a window reaching past the image is padded with zeros. Only the window is copied (a 4000x3000 image
    is not padded whole for each crop).

    Returns:
        The window (``image``'s dtype), the boxes normalised to it (clipped), and the classes, 0 for objects that
        fell out (less than ``min_visible`` of them inside).
    """
    shape = tf.shape(image)
    new_h, new_w = shape[0], shape[1]
    dy, dx = offset[0], offset[1]
    y0, x0 = tf.clip_by_value(dy, 0, new_h), tf.clip_by_value(dx, 0, new_w)
    y1, x1 = tf.clip_by_value(dy + size, y0, new_h), tf.clip_by_value(dx + size, x0, new_w)
    part = image[y0:y1, x0:x1]
    window = tf.pad(part, [[y0 - dy, dy + size - y1], [x0 - dx, dx + size - x1], [0, 0]])
    window = tf.ensure_shape(window, [size, size, 3])
    # Boxes: normalised -> image pixels -> window pixels -> normalised to the window.
    hw = tf.cast(tf.stack([new_h, new_w, new_h, new_w]), tf.float32)
    shift = tf.cast(tf.stack([dy, dx, dy, dx]), tf.float32)
    moved = (tf.cast(boxes, tf.float32) * hw - shift) / size
    clipped = tf.clip_by_value(moved, 0.0, 1.0)
    area = (moved[:, 2] - moved[:, 0]) * (moved[:, 3] - moved[:, 1])
    visible = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    keep = (visible >= min_visible * area) & (visible > 0) & (classes > 0)
    classes = tf.where(keep, classes, tf.zeros_like(classes))
    clipped = tf.where(keep[:, None], clipped, tf.zeros_like(clipped))
    return window, clipped, classes


def random_scale_and_crop(
    image: tf.Tensor,
    boxes: tf.Tensor,
    classes: tf.Tensor,
    seed: tf.Tensor,
    *,
    size: int,
    scale_range: tuple[float, float],
    min_visible: float,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """:func:`scale_and_crop` with a random scale and a random window position (uniform over the positions that
    keep the window inside the image, or the image inside the window when it is the smaller)."""
    seeds = tf.random.experimental.stateless_split(seed, 3)
    scale = tf.random.stateless_uniform([], seeds[0], scale_range[0], scale_range[1])
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    new = tf.cast(tf.round(shape * scale), tf.int32)
    slack = new - size  # >= 0: crop positions; < 0: padding positions
    lo, hi = tf.minimum(slack, 0), tf.maximum(slack, 0)
    oy = tf.random.stateless_uniform([], seeds[1], lo[0], hi[0] + 1, dtype=tf.int32)
    ox = tf.random.stateless_uniform([], seeds[2], lo[1], hi[1] + 1, dtype=tf.int32)
    return scale_and_crop(
        image, boxes, classes, scale=scale, offset=tf.stack([oy, ox]), size=size, min_visible=min_visible
    )


def random_colour(image: tf.Tensor, seed: tf.Tensor, *, brightness: float, contrast: tuple[float, float]) -> tf.Tensor:
    """Brightness and contrast jitter on float 0..255 pixels (hue is left alone: colour tells classes apart)."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    # By hand rather than tf.image.stateless_random_contrast, which refuses an empty range (contrast off).
    factor = tf.random.stateless_uniform([], seeds[0], contrast[0], contrast[1])
    mean = tf.reduce_mean(image, axis=[0, 1], keepdims=True)
    image = (image - mean) * factor + mean
    delta = tf.random.stateless_uniform([], seeds[1], -brightness, brightness) * 255.0
    return tf.clip_by_value(image + delta, 0.0, 255.0)


def augment(
    image: tf.Tensor, boxes: tf.Tensor, classes: tf.Tensor, seed: tf.Tensor, *, size: int, config: AugmentConfig
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Scale-and-crop to ``size``, flip, colour: the float32 ``[size, size, 3]`` image, boxes and classes."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
    image, boxes, classes = random_scale_and_crop(
        image, boxes, classes, seeds[0], size=size, scale_range=config.scale_range, min_visible=config.min_visible
    )
    if config.flip:
        image, boxes = random_flip(image, boxes, seeds[1])
        # A flipped padding row (all zeros) becomes (0, 1, 0, 1): keep padding rows zero.
        boxes = tf.where((classes > 0)[:, None], boxes, tf.zeros_like(boxes))
    image = random_colour(image, seeds[2], brightness=config.brightness, contrast=config.contrast)
    return image, boxes, classes
