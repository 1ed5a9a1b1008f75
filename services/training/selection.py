"""Which pool images a person labels, within a budget: by the model's doubt, or at random (the control).

**Doubt** is a number in ``[0, 1]`` per image, 1 the most in doubt:

- detection (:func:`detection_doubt`): how near the image's detection scores sit to the decision score ``t``
  (default 0.5): ``1 - min |s - t| / max(t, 1 - t)`` over its detections. A box at 0.5 is a coin toss; boxes at 0.98
  or 0.02 are settled. An image with no detection at all has doubt 0 (the model is sure there is nothing, or too
  lost to say: either way its scores say nothing).
- classification (:func:`classification_doubt`): the margin, ``1 - (p1 - p2)`` between the two most likely
  classes.

**Diversity** (:func:`choose`, ``selection="uncertainty"``): images are taken in order of doubt, and one whose
thumbnail (:func:`thumbnail_feature`: 16 x 16 grey, mean-centred, unit length) has a cosine similarity of at least
``max_similarity`` with one already chosen is skipped as a near-duplicate: twenty frames of one scene cost twenty
labels and teach what one does. Skipped images are not chosen later to fill the budget, so a round may send fewer
than the budget.

**Cluster-margin** (``selection="cluster_margin"``, Citovsky et al. 2021, simplified): the ``top_factor * budget``
most doubtful candidates are grouped into ``budget`` clusters (:func:`kmeans`) on the model's own embeddings (its
penultimate layer), and the most doubtful of each cluster is chosen. Pure doubt, on a weak model, spends a round on
one kind of confusing image (the same tiny noisy digits, forty times); one per cluster spreads the labels over the
different ways the model is confused. If some clusters come out empty, the most doubtful candidates left fill the
budget, so a round always labels ``budget`` when it can.

**Random** (``selection="random"``): a seeded uniform draw of ``budget`` images, without the diversity rule: the
baseline a labelling strategy must beat.

Every decision is recorded (:class:`Selection`): the chosen images with their doubt and rank, and the near-duplicates
skipped with the image they resemble, for the round's report. NumPy and Pillow only.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from PIL import Image

from services.training.review import Verdict
from services.vision.boxes import Detection

Strategy = Literal["uncertainty", "cluster_margin", "random"]
THUMB_SIDE = 16
"""The side of the thumbnails near-duplicates are found by."""


def detection_doubt(detections: Sequence[Detection], decision_score: float = 0.5) -> float:
    """How near an image's detection scores sit to ``decision_score`` (see the module's text)."""
    if not detections:
        return 0.0
    spread = max(decision_score, 1.0 - decision_score)
    nearest = min(abs(d.score - decision_score) for d in detections)
    return float(max(0.0, 1.0 - nearest / spread))


def classification_doubt(probabilities: Sequence[float] | np.ndarray) -> float:
    """``1 - (p1 - p2)``: the margin between the two most likely classes, turned into doubt."""
    p = np.sort(np.asarray(probabilities, dtype=np.float64))[::-1]
    if p.size < 2:
        raise ValueError("doubt needs at least two class probabilities")
    return float(1.0 - (p[0] - p[1]))


def thumbnail_feature(data: bytes) -> np.ndarray:
    """A 16 x 16 grey thumbnail of an encoded image, mean-centred and of unit length (zeros for a flat image), so
    the dot product of two is their cosine similarity."""
    with Image.open(io.BytesIO(data)) as image:
        small = image.convert("L").resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX)
    vector = np.asarray(small, dtype=np.float64).ravel()
    vector -= vector.mean()
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 1e-9 else vector


@dataclass(slots=True)
class Selection:
    """What :func:`choose` decided. ``chosen`` are indices into the candidates, in the order chosen."""

    strategy: Strategy
    budget: int | None
    candidates: int
    chosen: list[int] = field(default_factory=list)
    doubt: list[float] = field(default_factory=list)
    near_duplicates: dict[int, tuple[int, float]] = field(default_factory=dict)
    """Skipped candidate -> (the chosen one it resembles, their similarity)."""
    clusters: dict[int, int] = field(default_factory=dict)
    """cluster_margin: each shortlisted candidate -> its cluster."""

    def report(self, names: Sequence[str]) -> dict[str, Any]:
        """The JSON for the round's report: every chosen image with its doubt and why it was chosen, and the
        near-duplicates left out."""
        why = {"uncertainty": "most in doubt", "cluster_margin": "most in doubt of its cluster"}.get(
            self.strategy, "drawn at random"
        )
        return {
            "strategy": self.strategy,
            "budget": self.budget,
            "candidates": self.candidates,
            "chosen": [
                {"filename": names[i], "rank": rank + 1, "doubt": round(self.doubt[i], 6), "why": why}
                for rank, i in enumerate(self.chosen)
            ],
            "near_duplicates_skipped": [
                {
                    "filename": names[i],
                    "doubt": round(self.doubt[i], 6),
                    "like": names[j],
                    "similarity": round(similarity, 4),
                }
                for i, (j, similarity) in sorted(self.near_duplicates.items())
            ],
        }


def choose(
    doubt: Sequence[float],
    features: np.ndarray | None,
    *,
    strategy: Strategy,
    budget: int | None,
    seed: int | Sequence[int] = 0,
    max_similarity: float = 0.95,
    top_factor: int = 5,
) -> Selection:
    """Choose at most ``budget`` candidates (every one when ``budget`` is None) by ``strategy``.

    Args:
        doubt: Each candidate's doubt (see the module's text).
        features: ``[len(doubt), D]``: for ``uncertainty``, unit vectors (:func:`thumbnail_feature`) for the
            near-duplicate rule, or None to skip it; for ``cluster_margin``, the model's embeddings (required).
        strategy: ``"uncertainty"`` (most doubt first, near-duplicates skipped), ``"cluster_margin"`` (the most
            doubtful of each cluster of the shortlist) or ``"random"`` (a seeded draw).
        budget: How many to choose at most.
        seed: The random draw's seed (and the tie-break among equal doubts, and the clustering's start).
        max_similarity: Cosine similarity of thumbnails from which two images are near-duplicates.
        top_factor: cluster_margin's shortlist: the ``top_factor * budget`` most doubtful candidates.
    """
    n = len(doubt)
    selection = Selection(strategy, budget, n, doubt=[float(d) for d in doubt])
    limit = n if budget is None else min(budget, n)
    rng = np.random.default_rng(seed)
    if strategy == "random":
        selection.chosen = [int(i) for i in rng.permutation(n)[:limit]]
        return selection
    # Most doubt first; a seeded shuffle first, so equal doubts are not always taken in pool order.
    shuffled = rng.permutation(n)
    order = shuffled[np.argsort(-np.asarray(selection.doubt, dtype=np.float64)[shuffled], kind="stable")]
    if strategy == "cluster_margin":
        if features is None:
            raise ValueError("cluster_margin needs the model's embeddings as features")
        _one_per_cluster(selection, [int(i) for i in order], features, limit, top_factor, rng)
        return selection
    for index in (int(i) for i in order):
        if len(selection.chosen) >= limit:
            break
        if features is not None and selection.chosen:
            similarity = features[selection.chosen] @ features[index]
            best = int(np.argmax(similarity))
            if similarity[best] >= max_similarity:
                selection.near_duplicates[index] = (selection.chosen[best], float(similarity[best]))
                continue
        selection.chosen.append(index)
    return selection


def kmeans(points: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 25) -> np.ndarray:
    """Each point's cluster among ``k`` (Lloyd's k-means from a k-means++ start). Tens to hundreds of points a
    round: a few lines of NumPy rather than a new dependency. A centre left without points keeps its place."""
    x = np.asarray(points, dtype=np.float64)
    centres = [x[int(rng.integers(len(x)))]]
    for _ in range(1, k):
        distance = np.min([((x - c) ** 2).sum(axis=1) for c in centres], axis=0)
        total = float(distance.sum())
        pick = int(rng.choice(len(x), p=distance / total)) if total > 0 else int(rng.integers(len(x)))
        centres.append(x[pick])
    centre = np.stack(centres)
    assignment = np.zeros(len(x), dtype=np.int64)
    for _ in range(iterations):
        assignment = np.argmin(((x[:, None, :] - centre[None, :, :]) ** 2).sum(axis=2), axis=1)
        moved = np.stack([x[assignment == c].mean(axis=0) if (assignment == c).any() else centre[c] for c in range(k)])
        if np.allclose(moved, centre):
            break
        centre = moved
    return assignment


def _one_per_cluster(
    selection: Selection, order: list[int], features: np.ndarray, limit: int, top_factor: int, rng: np.random.Generator
) -> None:
    """cluster_margin's choice (see the module's text), into ``selection``; ``order`` is most doubtful first."""
    shortlist = order[: limit * top_factor]
    if limit == 0 or not shortlist:
        return
    vectors = np.asarray(features, dtype=np.float64)[shortlist]
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)  # cosine geometry
    assignment = kmeans(vectors, min(limit, len(shortlist)), rng)
    selection.clusters = {index: int(c) for index, c in zip(shortlist, assignment, strict=True)}
    seen: set[int] = set()
    for index in shortlist:  # most doubtful first, so each cluster's first is its most doubtful
        if selection.clusters[index] not in seen:
            seen.add(selection.clusters[index])
            selection.chosen.append(index)
    taken = set(selection.chosen)
    selection.chosen += [i for i in shortlist if i not in taken][: limit - len(selection.chosen)]


def select_for_review(
    verdicts: Sequence[Verdict],
    detections: Sequence[Sequence[Detection]],
    images: Sequence[bytes],
    *,
    strategy: Strategy,
    budget: int | None,
    seed: Sequence[int],
    decision_score: float,
    max_similarity: float,
) -> tuple[list[Verdict], dict[str, Any]]:
    """The verdicts (not accepted) a round sends to review, and the selection's report.

    Without a budget every image not accepted goes, in pool order (as before budgets existed); their doubt is still
    reported. With one, :func:`choose` picks, near-duplicates judged on thumbnails of the images' bytes.
    """
    pending = [i for i, v in enumerate(verdicts) if not v.accepted]
    doubt = [detection_doubt(detections[i], decision_score) for i in pending]
    if budget is None:
        selection = Selection(strategy, None, len(pending), chosen=list(range(len(pending))), doubt=doubt)
    else:
        features = None
        if strategy == "uncertainty" and pending:
            features = np.stack([thumbnail_feature(images[i]) for i in pending])
        selection = choose(doubt, features, strategy=strategy, budget=budget, seed=seed, max_similarity=max_similarity)
    names = [verdicts[i].filename for i in pending]
    return [verdicts[pending[c]] for c in selection.chosen], selection.report(names)
