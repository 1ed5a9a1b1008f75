"""Model outputs to answers: detections in original pixels, classifier scores to top-k labels.

One image's rows at a time (slice the batch first):

- :func:`detections_from_outputs` takes a detector's ``detection_boxes`` ``[N, 4]`` (normalised ``ymin, xmin, ymax,
  xmax`` on the letterboxed canvas), ``detection_scores`` ``[N]``, ``detection_classes`` ``[N]`` (label-map ids as
  floats, the OD API convention) and ``num_detections``; rows past ``num_detections`` are padding and ignored.
  Boxes are mapped back with the view's :class:`~services.vision.letterbox.Letterbox` (tiles included: their
  offsets land them in original pixels), rows below ``min_score``, with non-finite numbers, or whose box is empty
  once clipped to the view (a box in the canvas's zero padding) are dropped, and the rest come by score, at most
  ``max_detections``. Class ids the label map does not know are labelled ``class_<id>``.
- :func:`classifications_from_probabilities` takes a classifier's ``probabilities`` ``[K]`` (index ``k`` is label-map
  id ``k + 1``) and answers the ``top_k`` best.

Shapes that do not fit are the model's fault, not the client's: :class:`~services.errors.UpstreamError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from services.errors import UpstreamError
from services.vision.labelmap import LabelMap
from services.vision.letterbox import Letterbox
from services.vision.results import Box, Classification, Detection

Labels = LabelMap | Mapping[int, str] | None
"""Where names come from: a label map, a plain id -> name mapping, or nothing (every class is ``class_<id>``)."""


def label_for(labels: Labels, class_id: int) -> str:
    """The name of ``class_id``, or ``class_<id>`` when ``labels`` does not know it."""
    if labels is None:
        return f"class_{class_id}"
    if isinstance(labels, LabelMap):
        return labels.label(class_id)
    return labels.get(class_id) or f"class_{class_id}"


def detections_from_outputs(
    boxes: Any,
    scores: Any,
    classes: Any,
    count: Any,
    letterbox: Letterbox,
    label_map: Labels,
    *,
    min_score: float = 0.0,
    max_detections: int | None = None,
) -> list[Detection]:
    """One image's detector outputs as detections in original-image pixels, by score descending.

    Args:
        boxes: ``[N, 4]`` normalised ``ymin, xmin, ymax, xmax`` on the canvas (a leading batch axis of 1 is allowed).
        scores: ``[N]``.
        classes: ``[N]`` label-map ids (floats are rounded).
        count: ``num_detections``: rows from here on are ignored (``None``, empty or NaN: all rows).
        letterbox: How this view was placed on the canvas.
        label_map: Names for the ids.
        min_score: Drop detections scoring below this.
        max_detections: Keep at most this many; all when ``None``.

    Raises:
        UpstreamError: The outputs' shapes do not agree.
    """
    b = np.asarray(boxes, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    c = np.asarray(classes, dtype=np.float64).reshape(-1)
    if b.ndim == 3 and b.shape[0] == 1:
        b = b[0]
    if b.ndim != 2 or b.shape[1] != 4 or not b.shape[0] == s.shape[0] == c.shape[0]:
        raise UpstreamError(
            f"the model's outputs do not fit together: boxes {list(np.shape(boxes))}, scores "
            f"{list(np.shape(scores))}, classes {list(np.shape(classes))}"
        )
    n = b.shape[0]
    counted = np.empty(0) if count is None else np.asarray(count, dtype=np.float64).reshape(-1)
    if counted.size and np.isfinite(counted[0]):  # no usable count: every row is a detection
        n = max(0, min(n, int(counted[0])))
    b, s, c = b[:n], s[:n], c[:n]
    keep = np.isfinite(s) & np.isfinite(c) & np.isfinite(b).all(axis=1) & (s >= min_score)
    pixels = letterbox.to_pixels(b[keep])
    s, c = s[keep], np.rint(c[keep]).astype(np.int64)
    visible = (pixels[:, 2] > pixels[:, 0]) & (pixels[:, 3] > pixels[:, 1])
    pixels, s, c = pixels[visible], s[visible], c[visible]
    order = np.argsort(-s, kind="stable")
    if max_detections is not None:
        order = order[: max(0, max_detections)]
    return [
        Detection(
            label=label_for(label_map, int(c[i])),
            class_id=int(c[i]),
            score=float(s[i]),
            box=Box(*(float(v) for v in pixels[i])),
        )
        for i in order
    ]


def classifications_from_probabilities(
    probabilities: Any, label_map: Labels, *, top_k: int = 5, min_score: float = 0.0
) -> list[Classification]:
    """The ``top_k`` classes of one image's ``probabilities`` ``[K]`` (index ``k`` is id ``k + 1``), best first.

    Raises:
        UpstreamError: ``probabilities`` is not one row of numbers.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim == 2 and p.shape[0] == 1:
        p = p[0]
    if p.ndim != 1:
        raise UpstreamError(f"the model's probabilities have shape {list(p.shape)}; expected [K]")
    candidates = np.flatnonzero(np.isfinite(p) & (p >= min_score))
    order = candidates[np.argsort(-p[candidates], kind="stable")][: max(0, top_k)]
    return [Classification(label_for(label_map, int(k) + 1), int(k) + 1, float(p[k])) for k in order]
