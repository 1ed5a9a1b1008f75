"""The report of an active-learning job (:mod:`.active_learning`): ``active_learning.json``, its plot, the job's result.

The report starts with the starting version's validation AP and the pool's counts; every round appends its entry
(:func:`round_entry`: per class, boxed train images before, accepted images and boxes, sent to review, and why), which
the round then fills in step by step (dataset version, run, AP after, gain, model version, state, ``complete``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from services.jobs.params import ActiveLearningParams
from services.store.datasets.problems import ProblemReport
from services.store.datasets.storage import DatasetStore
from services.store.datasets.validate import ValidImage
from services.training import pipeline, plots
from services.training.results import EvaluationReport
from services.training.review import Verdict

REPORT = "active_learning.json"
PLOT = "rounds.png"
RESULT_FIELDS = (
    "round",
    "state",
    "complete",
    "accepted",
    "review",
    "dataset_version",
    "run",
    "model_version",
    "map50_before",
    "map50_after",
    "gain",
)
"""The fields of each round in the job's result (the report holds more)."""


def start_report(
    params: ActiveLearningParams,
    classes: Sequence[str],
    dataset_version: int,
    pool: Sequence[ValidImage],
    labelled: int,
    problems: ProblemReport,
    baseline: EvaluationReport,
) -> dict[str, Any]:
    """The report before any round: the pool, and the starting versions with their validation AP."""
    return {
        "model": params.model,
        "dataset": params.dataset,
        "classes": list(classes),
        "pool": {"images": len(pool), "labelled": labelled, "problems": problems.counts()},
        "start": {
            "model_version": params.version,
            "dataset_version": dataset_version,
            "map50": baseline.map50,
            "ap50": baseline.ap50(),
        },
        "current": {"round": 0, "model_version": params.version, "dataset_version": dataset_version},
        "rounds": [],
        "stopped": None,
    }


def class_counts(data_dir: Path, dataset: str, version: int, classes: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per class, the images and boxes of ``train`` in a dataset version."""
    manifest = DatasetStore(data_dir).manifest(dataset, version)
    train = manifest.counts["train"].per_class
    return {
        c: {"images": train[c].images, "boxes": train[c].boxes} if c in train else {"images": 0, "boxes": 0}
        for c in classes
    }


def round_entry(
    number: int,
    classes: Sequence[str],
    verdicts: Sequence[Verdict],
    before: dict[str, dict[str, int]],
    sent: set[str],
) -> dict[str, Any]:
    """Counts of one round: per class, boxed train images before, accepted (images, boxes) and sent to review (of
    those not accepted, the ones ``sent``: within the budget)."""
    per_class: dict[str, dict[str, Any]] = {
        c: {"labelled_before": before[c], "accepted": {"images": 0, "boxes": 0}, "review": 0} for c in classes
    }
    reasons: dict[str, int] = {}
    unlabelled = {"accepted": 0, "review": 0}
    for verdict in verdicts:
        if verdict.accepted:
            for name in {d.label for d in verdict.candidates}:
                per_class[name]["accepted"]["images"] += 1
            for d in verdict.candidates:
                per_class[d.label]["accepted"]["boxes"] += 1
        elif verdict.filename in sent:
            reasons[verdict.reason] = reasons.get(verdict.reason, 0) + 1
            if verdict.label is not None:
                per_class[verdict.label]["review"] += 1
        if verdict.label is None and (verdict.accepted or verdict.filename in sent):
            unlabelled["accepted" if verdict.accepted else "review"] += 1
    accepted = sum(v.accepted for v in verdicts)
    boxed = sum(b["images"] for b in before.values())
    return {
        "round": number,
        "predicted": len(verdicts),
        "accepted": accepted,
        "review": len(sent),
        "not_sent": len(verdicts) - accepted - len(sent),
        "increase": accepted / boxed if boxed else 0.0,
        "review_reasons": reasons,
        "unlabelled": unlabelled,
        "per_class": per_class,
    }


def write_report(reporter: pipeline.Reporter, report: dict[str, Any]) -> None:
    """(Re)write ``active_learning.json`` in the job's artifacts."""
    reporter.write_json(REPORT, report)


def plot_rounds(report: dict[str, Any], path: Path) -> None:
    """AP per class and mean after each trained round (round 0: the start), with accepted and review counts."""
    done = [r for r in report["rounds"] if r.get("map50_after") is not None]
    rounds = [0, *(r["round"] for r in done)]
    ap: dict[str, list[float | None]] = {
        name: [report["start"]["ap50"].get(name), *(r["ap50_after"].get(name) for r in done)]
        for name in report["classes"]
    }
    ap["mean"] = [report["start"]["map50"], *(r["map50_after"] for r in done)]
    plots.active_learning_rounds(
        rounds,
        ap,
        [r["accepted"] for r in done],
        [r["review"] for r in done],
        path,
        title=f"active learning: {report['model']} on {report['dataset']}",
    )


def job_result(report: dict[str, Any], artifacts: Path) -> dict[str, Any]:
    """The job's result: the final versions, each round's summary, why it stopped, where the report and plot are."""
    return {
        "model": report["model"],
        "model_version": report["final"]["model_version"],
        "dataset": report["dataset"],
        "dataset_version": report["final"]["dataset_version"],
        "rounds": [{k: r.get(k) for k in RESULT_FIELDS} for r in report["rounds"]],
        "stopped": report["stopped"],
        "report": str(artifacts / REPORT),
        "plot": str(artifacts / PLOT),
    }
