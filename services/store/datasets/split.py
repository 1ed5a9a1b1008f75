"""Seeded, stratified train/validation(/test) split of images that may each hold several classes.

The rule is iterative stratification (Sechidis, Tsoumakas and Vlahavas, 2011), made deterministic:

1. Each split ``s`` wants ``ratio[s] * n_c`` images of each class ``c`` and ``ratio[s] * N`` images in all.
2. Take the class with the fewest images not yet assigned (ties: by name). Go through its unassigned images in a
   seeded random order and give each to the split that still wants the most images *of that class* (ties: the split
   that wants the most images overall, then a seeded coin). The image then counts against every split's wants for
   every class it holds.
3. Repeat until every image with a class is assigned; images without any class (background images, unlabelled pool
   images) go to the split that wants the most images overall.

Working from the rarest class up means rare classes are split first, while every split still wants them, so each
split gets its share of every class: for images with one class each, every class's count per split is within one
image of ``ratio * n_c``; with several classes per image it is as close as the shared images allow. The same images
in the same order with the same seed always give the same split.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from services.errors import InvalidParameter

SPLITS = ("train", "validation", "test")
MIN_TRAIN, MAX_TRAIN = 0.5, 0.95
MAX_TEST = 0.4


def split_ratios(train: float, test: float = 0.0) -> dict[str, float]:
    """The split ratios for a train fraction and an optional test fraction; validation gets the rest.

    Raises:
        InvalidParameter: ``train`` outside 0.5-0.95, ``test`` outside 0-0.4, or nothing left for validation.
    """
    if not MIN_TRAIN <= train <= MAX_TRAIN:
        raise InvalidParameter(f"split must be between {MIN_TRAIN} and {MAX_TRAIN}, not {train}")
    if not 0.0 <= test <= MAX_TEST:
        raise InvalidParameter(f"test split must be between 0 and {MAX_TEST}, not {test}")
    validation = round(1.0 - train - test, 10)
    if validation <= 0:
        raise InvalidParameter(f"split {train} and test split {test} leave nothing for validation")
    ratios = {"train": train, "validation": validation}
    if test > 0:
        ratios["test"] = test
    return ratios


def stratified_split(items: Sequence[set[str]], ratios: Mapping[str, float], seed: int) -> list[str]:
    """The split of each item (by index), given each item's classes; see the module's text for the rule."""
    names = [s for s in SPLITS if s in ratios]
    rng = random.Random(seed)
    order = list(range(len(items)))
    rng.shuffle(order)

    by_class: dict[str, list[int]] = {}
    for index in order:
        for label in items[index]:
            by_class.setdefault(label, []).append(index)
    wants = {s: {c: ratios[s] * len(ix) for c, ix in by_class.items()} for s in names}
    wants_total = {s: ratios[s] * len(items) for s in names}
    assigned: list[str | None] = [None] * len(items)

    def give(index: int, split: str) -> None:
        assigned[index] = split
        wants_total[split] -= 1
        for label in items[index]:
            wants[split][label] -= 1

    remaining = {c: [i for i in ix] for c, ix in by_class.items()}
    while remaining:
        # The rarest class first, counting only images not assigned yet.
        label = min(remaining, key=lambda c: (sum(assigned[i] is None for i in remaining[c]), c))
        for index in remaining.pop(label):
            if assigned[index] is not None:
                continue
            best = max(wants[s][label] for s in names)
            tied = [s for s in names if wants[s][label] >= best - 1e-9]
            if len(tied) > 1:
                top = max(wants_total[s] for s in tied)
                tied = [s for s in tied if wants_total[s] >= top - 1e-9]
            give(index, tied[0] if len(tied) == 1 else rng.choice(tied))

    for index in order:
        if assigned[index] is None:
            top = max(wants_total[s] for s in names)
            tied = [s for s in names if wants_total[s] >= top - 1e-9]
            give(index, tied[0] if len(tied) == 1 else rng.choice(tied))
    return [s if s is not None else names[0] for s in assigned]
