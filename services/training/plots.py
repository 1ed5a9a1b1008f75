"""The PNG artifacts of jobs: the training curve, precision-recall curves, a confusion matrix (matplotlib, Agg).

Each figure is written aside and renamed into place, like every artifact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: files only (set before pyplot is imported)

import matplotlib.pyplot as plt

from services.files import atomic_path


def _save(figure: Any, path: Path) -> Path:
    try:
        with atomic_path(path, suffix=".png") as temporary:
            figure.savefig(temporary, dpi=100, bbox_inches="tight")
    finally:
        plt.close(figure)
    return path


def training_curve(
    history: Mapping[str, Sequence[float]],
    path: Path,
    *,
    title: str = "training",
    marks: Mapping[str, int] | None = None,
) -> Path:
    """Loss (and validation loss, and any accuracy) per epoch; ``marks`` draws labelled vertical lines at epochs
    (e.g. ``{"best": 7, "resumed": 3}``)."""
    figure, ax = plt.subplots(figsize=(7, 4))
    for key in sorted(history):
        values = list(history[key])
        if not values or "accuracy" in key:
            continue
        ax.plot(range(1, len(values) + 1), values, marker="o", label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    accuracy = {k: v for k, v in history.items() if "accuracy" in k and len(v)}
    if accuracy:
        right = ax.twinx()
        for key, series in sorted(accuracy.items()):
            right.plot(range(1, len(series) + 1), list(series), linestyle="--", label=key)
        right.set_ylabel("accuracy")
        right.set_ylim(0, 1)
        right.legend(loc="center right")
    for label, epoch in (marks or {}).items():
        ax.axvline(epoch, color="grey", linestyle=":", linewidth=1)
        ax.annotate(label, (epoch, 1), xycoords=("data", "axes fraction"), fontsize=8, va="top")
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    return _save(figure, path)


def precision_recall(curves: Mapping[str, Mapping[str, Any]], path: Path, *, title: str = "precision-recall") -> Path:
    """One curve per class: ``curves[name] = {"precision": [...], "recall": [...], "ap50": float | None}``."""
    figure, ax = plt.subplots(figsize=(6, 5))
    for name, curve in curves.items():
        recall: list[float] = list(curve.get("recall", []))
        precision: list[float] = list(curve.get("precision", []))
        ap = curve.get("ap50")
        label = f"{name} (AP {ap:.3f})" if isinstance(ap, float) else f"{name} (no objects)"
        ax.step([0.0, *recall], [1.0 if precision else 0.0, *precision], where="post", label=label)
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title)
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    return _save(figure, path)


def confusion_matrix(
    matrix: Sequence[Sequence[int]], classes: Sequence[str], path: Path, *, title: str = "confusion"
) -> Path:
    """A confusion matrix (rows: true class, columns: predicted) with counts in the cells."""
    size = max(4.0, 0.6 * len(classes) + 2)
    figure, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), labels=list(classes), rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), labels=list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", color="white" if count > peak / 2 else "black")
    return _save(figure, path)


def active_learning_rounds(
    rounds: Sequence[int],
    ap: Mapping[str, Sequence[float | None]],
    accepted: Sequence[int],
    review: Sequence[int],
    path: Path,
    *,
    title: str = "active learning",
) -> Path:
    """Validation AP@0.5 per class (and ``mean``) after each round (round 0: the starting version), with the images
    accepted and sent to review per round as bars on a second axis."""
    figure, ax = plt.subplots(figsize=(7, 4.5))
    counts = ax.twinx()
    width = 0.35
    xs = list(rounds[1:])
    counts.bar([x - width / 2 for x in xs], accepted, width, color="tab:green", alpha=0.3, label="accepted")
    counts.bar([x + width / 2 for x in xs], review, width, color="tab:red", alpha=0.3, label="review")
    counts.set_ylabel("images")
    counts.legend(loc="center right", fontsize=8)
    for name, values in ap.items():
        points = [(r, v) for r, v in zip(rounds, values, strict=True) if v is not None]
        style = {"linewidth": 2.5, "color": "black"} if name == "mean" else {"linewidth": 1}
        ax.plot([r for r, _ in points], [v for _, v in points], marker="o", label=name, **style)
    ax.set_zorder(counts.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.set_xticks(list(rounds))
    ax.set_xlabel("round (0: the starting version)")
    ax.set_ylabel("validation AP@0.5")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    return _save(figure, path)


def sweep_front(
    points: Sequence[tuple[str, float, float, bool]], path: Path, *, metric: str, title: str = "sweep"
) -> Path:
    """A sweep's rows as ``(label, images/s, metric, on the front)``: every point labelled, the Pareto front drawn
    as a line through its points (fastest to most accurate) and its points filled."""
    figure, ax = plt.subplots(figsize=(7, 5))
    for label, speed, value, on_front in points:
        colour = "tab:blue" if on_front else "none"  # off the front: hollow
        ax.scatter([speed], [value], s=40, zorder=3, facecolors=colour, edgecolors="tab:blue" if on_front else "grey")
        ax.annotate(label, (speed, value), xytext=(4, 4), textcoords="offset points", fontsize=8)
    front = sorted((speed, value) for _, speed, value, on_front in points if on_front)
    if front:
        ax.plot([s for s, _ in front], [v for _, v in front], color="tab:blue", linewidth=1.5, label="Pareto front")
        ax.legend(loc="lower left", fontsize=8)
    ax.set_xlabel("images/s at the best batch size (this worker, in process)")
    ax.set_ylabel(metric)
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _save(figure, path)


def labelling_curves(
    curves: Mapping[str, Sequence[Mapping[str, float]]], path: Path, *, title: str = "labels against accuracy"
) -> Path:
    """One line per labelling strategy: the mean test score against the labelled images (each point a
    ``{"labelled", "mean", "min", "max"}`` mapping), with the spread over seeds (min to max) as a band."""
    figure, ax = plt.subplots(figsize=(7, 4.5))
    for name, points in curves.items():
        xs = [p["labelled"] for p in points]
        (line,) = ax.plot(xs, [p["mean"] for p in points], marker="o", label=name)
        ax.fill_between(xs, [p["min"] for p in points], [p["max"] for p in points], color=line.get_color(), alpha=0.2)
    ax.set_xlabel("labelled images")
    ax.set_ylabel("top-1 on the held-out set")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return _save(figure, path)
