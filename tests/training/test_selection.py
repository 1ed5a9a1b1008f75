"""Choosing what a person labels within a budget (services/training/selection.py), on a pool built so that which
images are in doubt, and which are near-duplicates, is known."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
from pydantic import ValidationError

from services.jobs.params import ActiveLearningParams
from services.training.review import Verdict
from services.training.selection import (
    choose,
    classification_doubt,
    detection_doubt,
    select_for_review,
    thumbnail_feature,
)
from services.vision.boxes import Box, Detection
from tests.gateway.helpers import encode

BOX = Box(10, 10, 40, 40)


def texture(seed: int, size: int = 64) -> np.ndarray:
    """A distinct random picture (blocks of grey), as uint8 RGB."""
    blocks = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return np.kron(blocks, np.ones((size // 8, size // 8, 1), dtype=np.uint8))


def near_copy(image: np.ndarray, seed: int) -> np.ndarray:
    """The same picture with a little noise (another frame of the same scene)."""
    noise = np.random.default_rng(seed).integers(-6, 7, image.shape)
    return np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)


def found(*scores: float) -> list[Detection]:
    return [Detection("circle", 1, s, BOX) for s in scores]


def pool(n: int) -> tuple[list[Verdict], list[list[Detection]], list[bytes]]:
    """``n`` pending images whose best-in-doubt score climbs towards 0.5 with the index: image ``n - 1`` is the most
    in doubt, image 0 the least."""
    verdicts = [Verdict(f"p/{i:02d}.png", "circle", "low_confidence") for i in range(n)]
    detections = [found(0.95, 0.95 - 0.45 * i / (n - 1)) for i in range(n)]
    images = [encode(texture(i)) for i in range(n)]
    return verdicts, detections, images


def select(
    verdicts: list[Verdict],
    detections: list[list[Detection]],
    images: list[bytes],
    *,
    strategy: str = "uncertainty",
    budget: int | None = 4,
    seed: tuple[int, int] = (0, 1),
) -> tuple[list[Verdict], dict[str, object]]:
    return select_for_review(
        verdicts,
        detections,
        images,
        strategy=strategy,  # type: ignore[arg-type]
        budget=budget,
        seed=seed,
        decision_score=0.5,
        max_similarity=0.95,
    )


def test_doubt_is_nearness_to_the_decision_score_and_the_class_margin() -> None:
    assert detection_doubt(found(0.5)) == 1.0
    assert detection_doubt(found(0.99, 0.02)) < detection_doubt(found(0.7)) < detection_doubt(found(0.45))
    assert detection_doubt(found(1.0)) == detection_doubt(found(0.0)) == detection_doubt([]) == 0.0
    assert detection_doubt(found(0.8), decision_score=0.8) == 1.0
    assert classification_doubt([0.5, 0.5, 0.0]) == 1.0
    assert classification_doubt([0.05, 0.9, 0.05]) == pytest.approx(0.15)
    assert classification_doubt([0.4, 0.35, 0.25]) > classification_doubt([0.6, 0.3, 0.1])


def test_uncertainty_sends_the_most_doubtful_within_the_budget_and_says_why() -> None:
    verdicts, detections, images = pool(12)
    chosen, report = select(verdicts, detections, images, budget=4)
    assert [v.filename for v in chosen] == ["p/11.png", "p/10.png", "p/09.png", "p/08.png"]
    rows = report["chosen"]
    assert isinstance(rows, list) and [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert [r["filename"] for r in rows] == [v.filename for v in chosen]
    assert rows[0]["doubt"] == pytest.approx(1.0) and rows[0]["why"] == "most in doubt"
    assert all(a["doubt"] >= b["doubt"] for a, b in itertools.pairwise(rows))
    assert (report["strategy"], report["budget"], report["candidates"]) == ("uncertainty", 4, 12)


def test_accepted_images_are_never_sent_and_a_budget_over_the_pool_sends_all_pending() -> None:
    verdicts, detections, images = pool(6)
    verdicts[5] = Verdict("p/05.png", "circle", "accepted")  # the most in doubt, but accepted: not for review
    chosen, report = select(verdicts, detections, images, budget=100)
    assert sorted(v.filename for v in chosen) == [f"p/{i:02d}.png" for i in range(5)]
    assert chosen[0].filename == "p/04.png" and report["candidates"] == 5


def test_without_a_budget_every_pending_image_goes_in_pool_order() -> None:
    verdicts, detections, images = pool(6)
    chosen, report = select(verdicts, detections, images, budget=None)
    assert chosen == verdicts
    rows = report["chosen"]
    assert isinstance(rows, list) and rows[-1]["doubt"] == pytest.approx(1.0)


def test_near_duplicates_are_not_both_chosen() -> None:
    verdicts, detections, images = pool(10)
    # Image 8 becomes another frame of image 9 (the most in doubt), with almost the same doubt.
    images[8] = encode(near_copy(texture(9), seed=5))
    assert float(thumbnail_feature(images[8]) @ thumbnail_feature(images[9])) > 0.99
    assert float(thumbnail_feature(images[7]) @ thumbnail_feature(images[9])) < 0.5
    chosen, report = select(verdicts, detections, images, budget=3)
    assert [v.filename for v in chosen] == ["p/09.png", "p/07.png", "p/06.png"]
    skipped = report["near_duplicates_skipped"]
    assert isinstance(skipped, list) and [(s["filename"], s["like"]) for s in skipped] == [("p/08.png", "p/09.png")]
    assert skipped[0]["similarity"] > 0.99


def test_the_near_duplicate_rule_sees_a_flat_image_as_like_nothing() -> None:
    flat = io.BytesIO(encode(np.full((32, 32, 3), 90, np.uint8))).getvalue()
    assert not thumbnail_feature(flat).any()
    features = np.stack([thumbnail_feature(flat), thumbnail_feature(flat)])
    assert choose([0.9, 0.8], features, strategy="uncertainty", budget=2).chosen == [0, 1]


def test_random_is_seeded_respects_the_budget_and_differs_from_uncertainty() -> None:
    verdicts, detections, images = pool(30)
    by_doubt = [v.filename for v in select(verdicts, detections, images, budget=5)[0]]
    draws = {
        seed: [v.filename for v in select(verdicts, detections, images, strategy="random", budget=5, seed=seed)[0]]
        for seed in ((0, 1), (0, 2), (1, 1))
    }
    again = [v.filename for v in select(verdicts, detections, images, strategy="random", budget=5, seed=(0, 1))[0]]
    assert again == draws[(0, 1)]
    assert all(len(d) == len(set(d)) == 5 for d in draws.values())
    assert len({tuple(d) for d in draws.values()}) == 3  # another seed or round, another draw
    assert all(d != by_doubt for d in draws.values())
    report = select(verdicts, detections, images, strategy="random", budget=5)[1]
    rows = report["chosen"]
    assert isinstance(rows, list) and {r["why"] for r in rows} == {"drawn at random"}


def blobs_pool() -> tuple[list[float], np.ndarray, list[int]]:
    """40 candidates: the 12 most doubtful in four tight clusters of embeddings (three each, cluster 0 the most
    doubtful, so plain doubt takes three of it), the other 28 far less doubtful and in clusters of their own."""
    rng = np.random.default_rng(7)
    doubt, vectors, blob = [], [], []
    for n in range(40):
        group = n // 3 if n < 12 else 4 + n % 4
        doubt.append(0.99 - 0.01 * n if n < 12 else 0.5 - 0.01 * (n - 12))
        vectors.append(np.eye(8)[group] + rng.normal(0, 0.01, 8))
        blob.append(group)
    order = rng.permutation(40)  # not in doubt order in the candidates' list
    return [doubt[i] for i in order], np.stack([vectors[i] for i in order]), [blob[i] for i in order]


def test_cluster_margin_takes_the_most_doubtful_of_each_cluster_of_the_shortlist_only() -> None:
    doubt, embeddings, blob = blobs_pool()
    picked = choose(doubt, embeddings, strategy="cluster_margin", budget=4, seed=(3, 1), top_factor=3)
    top12 = set(np.argsort(doubt)[::-1][:12].tolist())
    assert len(picked.chosen) == 4 and set(picked.chosen) <= top12  # within budget, only among the top doubt
    assert sorted(blob[i] for i in picked.chosen) == [0, 1, 2, 3]  # one per cluster
    for i in picked.chosen:  # ...and the most doubtful of its cluster
        assert doubt[i] == max(doubt[j] for j in range(40) if blob[j] == blob[i])
    assert set(picked.clusters) == top12 and len(set(picked.clusters.values())) == 4
    assert all((picked.clusters[i] == picked.clusters[j]) == (blob[i] == blob[j]) for i in top12 for j in top12)
    plain = choose(doubt, None, strategy="uncertainty", budget=4)
    assert sorted(blob[i] for i in plain.chosen) == [0, 0, 0, 1]  # what doubt alone would have spent
    report = picked.report([f"p/{i:02d}.png" for i in range(40)])
    assert {r["why"] for r in report["chosen"]} == {"most in doubt of its cluster"}


def test_cluster_margin_fills_its_budget_and_needs_embeddings() -> None:
    doubt, embeddings, _ = blobs_pool()
    for budget in (1, 6, 40, 50):
        picked = choose(doubt, embeddings, strategy="cluster_margin", budget=budget, seed=0)
        assert len(picked.chosen) == len(set(picked.chosen)) == min(budget, 40)
    with pytest.raises(ValueError, match="embeddings"):
        choose(doubt, None, strategy="cluster_margin", budget=4)


def test_the_parameters_are_checked() -> None:
    base = {"model": "m", "dataset": "d", "pool": "pool"}
    params = ActiveLearningParams.model_validate(base)
    assert (params.selection, params.budget, params.decision_score) == ("uncertainty", None, 0.5)
    assert ActiveLearningParams.model_validate({**base, "budget": 8, "selection": "random"}).budget == 8
    for bad in ({"budget": 0}, {"selection": "entropy"}, {"decision_score": 1.0}, {"max_similarity": 0}):
        with pytest.raises(ValidationError):
            ActiveLearningParams.model_validate({**base, **bad})
