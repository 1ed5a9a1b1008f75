"""The split is seeded, reproducible and stratified per class, also when images hold several classes."""

from __future__ import annotations

from collections import Counter

import pytest

from services.errors import InvalidParameter
from services.store.datasets.split import split_ratios, stratified_split
from tests.datasets.fixtures import scenes


def _per_class(items: list[set[str]], assigned: list[str]) -> dict[str, Counter[str]]:
    counts: dict[str, Counter[str]] = {}
    for classes, split in zip(items, assigned, strict=True):
        for c in classes:
            counts.setdefault(c, Counter())[split] += 1
    return counts


def test_single_class_images_are_within_one_image_of_the_ratio() -> None:
    items = [{"a"}] * 37 + [{"b"}] * 11 + [{"c"}] * 5 + [{"d"}] * 2 + [{"e"}]
    ratios = split_ratios(0.7, 0.1)
    assigned = stratified_split(items, ratios, seed=3)
    for label, counts in _per_class(items, assigned).items():
        total = sum(counts.values())
        for split, ratio in ratios.items():
            assert abs(counts[split] - ratio * total) < 1.0, (label, split, counts)


def test_multi_class_detection_images_are_stratified_per_class() -> None:
    # Generated scenes: 1-4 objects of 4 classes per image, so most images hold several classes.
    items = [{o.label for o in s.objects} for s in scenes(seed=11, count=60, objects=(1, 4), size=96)]
    assert sum(len(i) > 1 for i in items) > 30
    ratios = split_ratios(0.8)
    assigned = stratified_split(items, ratios, seed=0)
    assert abs(Counter(assigned)["train"] - 0.8 * 60) <= 1
    for label, counts in _per_class(items, assigned).items():
        total = sum(counts.values())
        for split, ratio in ratios.items():
            assert abs(counts[split] - ratio * total) <= 1.0, (label, split, counts)


def test_same_seed_same_split_other_seed_other_split() -> None:
    items = [{o.label for o in s.objects} for s in scenes(seed=5, count=40, size=96)]
    ratios = split_ratios(0.75)
    first = stratified_split(items, ratios, seed=42)
    assert stratified_split(items, ratios, seed=42) == first
    assert stratified_split(items, ratios, seed=43) != first


def test_images_without_classes_still_follow_the_ratio() -> None:
    items = [set()] * 10 + [{"a"}] * 10
    assigned = stratified_split(items, split_ratios(0.8), seed=1)
    assert Counter(assigned[:10])["train"] == 8 and Counter(assigned[10:])["train"] == 8


@pytest.mark.parametrize(("train", "test"), [(0.3, 0.0), (0.99, 0.0), (0.8, 0.5), (0.8, 0.2), (0.8, -0.1)])
def test_bad_ratios_are_refused(train: float, test: float) -> None:
    with pytest.raises(InvalidParameter):
        split_ratios(train, test)


def test_ratios() -> None:
    assert split_ratios(0.8) == {"train": 0.8, "validation": 0.2}
    assert split_ratios(0.7, 0.1) == {"train": 0.7, "validation": 0.2, "test": 0.1}
