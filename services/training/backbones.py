"""Where a MobileNet backbone's starting weights come from, decided before Keras is asked for anything.

``keras.applications`` downloads ImageNet weights on first use and caches them under ``$KERAS_HOME/models`` (default
``~/.keras/models``). A machine without internet would hang or fail in that download, so ``"imagenet"`` is resolved
here first: the cached file Keras would read is looked up, and only if it is there is it used (as a local file, so
Keras never tries the network). Otherwise the backbone trains from scratch, and a log line says so and why.

Keras's ImageNet weights exist for: MobileNetV2 with alpha 0.35, 0.5, 0.75, 1.0, 1.3, 1.4 at 96, 128, 160, 192 or
224 px (224 for a free-size input, as the detector's training backbone is built); MobileNetV3 Small/Large with alpha
0.75 or 1.0 at 224 px.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

V2_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
V2_SIZES = (96, 128, 160, 192, 224)
V3_ALPHAS = (0.75, 1.0)


def keras_cache_dir() -> Path:
    """Keras's download cache for model weights (``$KERAS_HOME/models``, default ``~/.keras/models``)."""
    base = Path(os.environ.get("KERAS_HOME") or "~/.keras").expanduser()
    if not os.access(base, os.W_OK):
        base = Path(tempfile.gettempdir()) / ".keras"  # Keras's own fallback when its home is not writable
    return base / "models"


def imagenet_file_name(backbone: str, alpha: float, size: int | None) -> str | None:
    """The name of the no-top ImageNet weights file Keras would download for this backbone, or None when Keras has
    no ImageNet weights for it (that alpha)."""
    if backbone == "mobilenet_v2":
        if alpha not in V2_ALPHAS:
            return None
        rows = size if size in V2_SIZES else 224
        return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{rows}_no_top.h5"
    if backbone in ("mobilenet_v3_small", "mobilenet_v3_large"):
        if alpha not in V3_ALPHAS:
            return None
        kind = backbone.rsplit("_", 1)[1]
        return f"weights_mobilenet_v3_{kind}_224_{float(alpha)}_float_no_top_v2.h5"
    raise ValueError(f"unknown backbone {backbone!r}")


def resolve_weights(backbone: str, alpha: float, weights: str | None, *, size: int | None = None) -> str | None:
    """What to pass to ``keras.applications`` as ``weights``: a local file, or None (from scratch).

    Args:
        backbone: ``mobilenet_v2``, ``mobilenet_v3_small`` or ``mobilenet_v3_large``.
        alpha: The width multiplier.
        weights: ``None`` or ``"none"`` (from scratch), ``"imagenet"`` (from Keras's cache when it is there, else
            from scratch), or the path of a weights file for the backbone without its top.
        size: The backbone's input size (None: free, which takes the 224 px weights).

    Raises:
        FileNotFoundError: ``weights`` names a file that does not exist.
    """
    if weights is None or weights == "none":
        log.warning("backbone %s (alpha %g) trains from scratch: no pretrained weights asked for", backbone, alpha)
        return None
    if weights == "imagenet":
        name = imagenet_file_name(backbone, alpha, size)
        if name is None:
            log.warning(
                "backbone %s (alpha %g) trains from scratch: Keras has no ImageNet weights for alpha %g",
                backbone,
                alpha,
                alpha,
            )
            return None
        cached = keras_cache_dir() / name
        if not cached.is_file():
            log.warning(
                "backbone %s (alpha %g) trains from scratch: its ImageNet weights are not in Keras's cache (%s), and "
                "nothing is downloaded at run time; put the file there (or put a weights file in the data folder's "
                "weights/ folder and pass its name as weights) to fine-tune",
                backbone,
                alpha,
                cached,
            )
            return None
        log.info("backbone %s (alpha %g) starts from ImageNet weights %s", backbone, alpha, cached)
        return str(cached)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights file not found: {weights}")
    log.info("backbone %s (alpha %g) starts from weights %s", backbone, alpha, path)
    return str(path)
