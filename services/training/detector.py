"""The detector: a MobileNet backbone from ``keras.applications``, a small FPN-like merge down to stride 4, and a
CenterNet-style anchor-free head (per-class centre heat-maps, box size and centre offset).

The model's raw output is one tensor ``[batch, H / stride, W / stride, K + 4]``: ``K`` heat-map logits, then the box
width and height in output cells, then the centre's x and y offset inside its cell. :mod:`services.training.postprocess`
turns it into detections; :mod:`services.training.targets` encodes ground truth in the same layout. The backbone is
fully convolutional and built with a free spatial size, so one model trains on crops and serves on ``input_size``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import keras
from keras import layers

from services.training.backbones import resolve_weights
from services.vision.tiling import ModelViews, Views

log = logging.getLogger(__name__)

BACKBONES: tuple[str, ...] = ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large")
"""The ``keras.applications`` backbones the builder knows."""

FEATURE_STRIDES: tuple[int, ...] = (4, 8, 16, 32)
"""The backbone feature levels the neck merges (coarsest first when merging)."""

HEAT_PRIOR = 0.01
"""Initial heat-map probability everywhere (focal-loss prior), so early training is not swamped by negatives."""


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Everything needed to rebuild a detector and to interpret its output.

    Attributes:
        classes: Class names in label-map order (label-map id = index + 1).
        input_size: The serving canvas size S (images are letterboxed to S x S); a multiple of 32.
        backbone: One of :data:`BACKBONES`.
        alpha: MobileNet width multiplier.
        weights: ``None`` (from scratch), ``"imagenet"`` (from Keras's weights cache when the file is there, else
            from scratch with a warning: see :mod:`services.training.backbones`), or the path of a local weights file
            for the backbone.
        stride: Output stride of the head (4 or 8): 4 keeps centres of small, close objects apart.
        neck_channels: Channels of the merged feature map and of the head branches.
        max_detections: N, the number of detection rows the export answers.
        score_slope: Score calibration (see :mod:`services.training.calibration`): a heat-map peak of logit ``z``
            scores ``sigmoid(score_slope * z + score_intercept)``; ``1, 0`` is the raw heat-map probability.
        score_intercept: See ``score_slope``.
        bn_momentum: Momentum of every batch-norm layer's moving statistics. Keras's MobileNets use 0.999, which
            needs many thousands of steps before inference-mode statistics are right; short CPU trainings from
            scratch need a faster average.
        views: How it sees an image (``"whole"``: letterboxed; ``"tiles"``: native-scale views of S x S), recorded in
            the export's ``spotter.json`` so that the gateway's ``tile=auto`` and evaluation follow it.
        crop_size: Tiles: the side of the native-scale crops it was trained on.
        object_size_px: Tiles: ``(smallest, largest)`` object side of its training data, in pixels.
    """

    classes: tuple[str, ...]
    input_size: int = 320
    backbone: str = "mobilenet_v2"
    alpha: float = 0.35
    weights: str | None = None
    stride: int = 4
    neck_channels: int = 64
    max_detections: int = 100
    bn_momentum: float = 0.99
    score_slope: float = 1.0
    score_intercept: float = 0.0
    views: str = "whole"
    crop_size: int | None = None
    object_size_px: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not self.classes:
            raise ValueError("a detector needs at least one class")
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; known: {', '.join(BACKBONES)}")
        if self.input_size % 32 or self.input_size < 64:
            raise ValueError(f"input_size must be a multiple of 32 and at least 64, got {self.input_size}")
        if self.views not in ("whole", "tiles"):
            raise ValueError(f"views must be 'whole' or 'tiles', got {self.views!r}")
        if self.stride not in (4, 8):
            raise ValueError(f"stride must be 4 or 8, got {self.stride}")
        if self.score_slope <= 0:
            raise ValueError(
                f"score_slope must be positive (scores must rank as the heat-map does), got {self.score_slope}"
            )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def calibration(self) -> tuple[float, float]:
        return (self.score_slope, self.score_intercept)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (written beside checkpoints and exports)."""
        data = asdict(self)
        data["classes"] = list(self.classes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorConfig:
        """The inverse of :meth:`to_dict` (unknown keys are an error, so a typo cannot pass silently)."""
        values = dict(data)
        values["classes"] = tuple(values["classes"])
        if values.get("object_size_px") is not None:
            values["object_size_px"] = tuple(values["object_size_px"])
        return cls(**values)

    @property
    def model_views(self) -> ModelViews:
        """How it sees an image, in the form ``spotter.json`` and the gateway use."""
        views: Views = "tiles" if self.views == "tiles" else "whole"
        return ModelViews(views, self.crop_size, self.object_size_px)


def build_detector(config: DetectorConfig, *, fixed_size: bool = False, pretrained: bool = True) -> keras.Model:
    """Build the detector (raw output, see the module docstring) for ``config``.

    Args:
        config: What to build.
        fixed_size: Fix the input to ``input_size`` x ``input_size`` (for export: static shapes trace cleanly and
            let TensorFlow plan memory); by default the spatial size is free, so training can use smaller crops.
        pretrained: Load ``config.weights`` into the backbone; ``False`` builds an empty twin to copy weights into.

    Returns:
        A Keras functional model taking float32 ``[batch, H, W, 3]`` pixels in 0..255 (H and W multiples of 32) and
        answering ``[batch, H / stride, W / stride, K + 4]``.
    """
    indices = _feature_indices(config)
    backbone = _backbone(config, config.input_size if fixed_size else None, pretrained=pretrained)
    taps = [backbone.layers[i].output for i in indices]
    merged = _neck(taps, config)
    heat = _branch(merged, config.neck_channels, "heat")
    heat = layers.Conv2D(
        config.num_classes,
        1,
        bias_initializer=keras.initializers.Constant(-math.log((1 - HEAT_PRIOR) / HEAT_PRIOR)),
        name="heat_logits",
    )(heat)
    box = _branch(merged, config.neck_channels, "box")
    box = layers.Conv2D(4, 1, name="box_regression")(box)
    raw = layers.Concatenate(name="raw")([heat, box])
    model = keras.Model(backbone.input, raw, name=f"centernet_{config.backbone}_{config.alpha:g}")
    for layer in model.layers:  # the functional model's layers are flat: the backbone's are among them
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = config.bn_momentum
    return model


def _backbone(config: DetectorConfig, size: int | None, *, pretrained: bool) -> keras.Model:
    """The backbone (``size`` x ``size`` inputs, or free with ``None``); its input is raw 0..255 pixels (the scaling
    is part of the model)."""
    inputs = keras.Input((size, size, 3), name="pixels")
    # An empty twin (pretrained=False) gets its weights copied in; otherwise resolve_weights decides, without ever
    # letting Keras try a download.
    weights = resolve_weights(config.backbone, config.alpha, config.weights, size=size) if pretrained else None
    common: dict[str, Any] = {"include_top": False, "alpha": config.alpha, "weights": weights}
    if config.backbone == "mobilenet_v2":
        # MobileNetV2 expects -1..1; V3 rescales inside (include_preprocessing), so both take 0..255 here.
        scaled = layers.Rescaling(1 / 127.5, offset=-1.0, name="to_unit_range")(inputs)
        net = keras.applications.MobileNetV2(input_tensor=scaled, **common)
    elif config.backbone == "mobilenet_v3_small":
        net = keras.applications.MobileNetV3Small(input_tensor=inputs, minimalistic=False, **common)
    else:
        net = keras.applications.MobileNetV3Large(input_tensor=inputs, minimalistic=False, **common)
    return keras.Model(inputs, net.output, name=config.backbone)


def _feature_indices(config: DetectorConfig) -> list[int]:
    """For each of :data:`FEATURE_STRIDES`, the position in the backbone's layer list of its last layer at that
    stride.

    Found by probing a fixed-size twin of the backbone (same layers in the same order; generated layer names such as
    ``re_lu_16`` differ between builds, positions do not), so any MobileNet variant works without a hand-kept table.
    """
    size = 128
    probe = _backbone(config, size, pretrained=False)
    last: dict[int, int] = {}
    for index, layer in enumerate(probe.layers):
        shape = getattr(layer.output, "shape", None)
        if shape is None or len(shape) != 4 or not shape[1]:
            continue
        stride = size // int(shape[1])
        if int(shape[1]) * stride == size and stride in FEATURE_STRIDES:
            last[stride] = index
    missing = [s for s in FEATURE_STRIDES if s not in last]
    if missing:
        raise ValueError(f"{config.backbone} has no feature map at strides {missing}")
    return [last[s] for s in FEATURE_STRIDES]


def _conv_bn_relu(x: Any, channels: int, name: str, *, separable: bool = True) -> Any:
    conv = layers.SeparableConv2D if separable else layers.Conv2D
    x = conv(channels, 3 if separable else 1, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _neck(taps: list[Any], config: DetectorConfig) -> Any:
    """Top-down merge (FPN-like): lateral 1x1 projections, 2x upsampling and addition, from stride 32 down to the
    head's stride; a separable 3x3 after each addition smooths the upsampling seams."""
    by_stride = dict(zip(FEATURE_STRIDES, taps, strict=True))
    channels = config.neck_channels
    x = _conv_bn_relu(by_stride[32], channels, "lateral_32", separable=False)
    for stride in (16, 8, 4):
        if stride < config.stride:
            break
        up = layers.UpSampling2D(2, interpolation="bilinear", name=f"up_{stride}")(x)
        lateral = _conv_bn_relu(by_stride[stride], channels, f"lateral_{stride}", separable=False)
        x = layers.Add(name=f"merge_{stride}")([up, lateral])
        x = _conv_bn_relu(x, channels, f"smooth_{stride}")
    return x


def _branch(x: Any, channels: int, name: str) -> Any:
    return _conv_bn_relu(x, channels, f"{name}_head")
