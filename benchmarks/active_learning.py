"""Does labelling what the model doubts beat labelling at random? The simulated-annotator experiment (issue 17, item 2).

``python -m benchmarks.active_learning [--quick] [--out data/bench/active-learning]``: for each seed, a small
labelled start, a pool several times larger whose labels only a simulated annotator holds, and a fixed held-out test
set, all generated hard digits (:mod:`services.training.simulate`). Round 0 is trained once per seed; then the
``uncertainty``, ``cluster_margin`` and ``random`` strategies each run their rounds (label ``budget`` pool images,
retrain from scratch, score on the test set). Prints, per round, the labelled images and the mean and min-max over
seeds of top-1 for every strategy, then the labels saved: how many labelled images random needs (linear
interpolation of its mean curve) to reach the top-1 each other strategy reaches with M. Writes
``active_learning.json`` and ``rounds.png`` (top-1 against labelled images, mean line and min-max band per strategy)
to ``--out``.

``--quick`` is a tiny run (one seed, a few images, a few steps) that checks everything connects; its numbers mean
nothing.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import typer

log = logging.getLogger("benchmarks.active_learning")

STRATEGIES: tuple[Literal["uncertainty", "cluster_margin", "random"], ...] = ("uncertainty", "cluster_margin", "random")


def labels_to_reach(labelled: Sequence[float], accuracy: Sequence[float], target: float) -> float | None:
    """The labelled images at which the curve ``(labelled, accuracy)`` first reaches ``target``, by linear
    interpolation between its points; None when it never does."""
    points = list(zip(labelled, accuracy, strict=True))
    if points and points[0][1] >= target:
        return float(points[0][0])
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if y0 < target <= y1:
            return float(x0 + (target - y0) / (y1 - y0) * (x1 - x0))
    return None


def summarise(runs: dict[str, list[list[dict[str, Any]]]], metric: str = "accuracy") -> dict[str, list[dict[str, Any]]]:
    """Per strategy and round: mean labelled images, and mean, std, min and max of ``metric`` over the seeds.

    ``runs[strategy]`` is one list of round records (``labelled``, ``accuracy``...) per seed; rounds a seed did not
    reach are left out of that round's figures.
    """
    summary: dict[str, list[dict[str, Any]]] = {}
    for strategy, seeds in runs.items():
        rounds = max(len(records) for records in seeds)
        rows = []
        for number in range(rounds):
            at = [records[number] for records in seeds if len(records) > number]
            values = np.array([r[metric] for r in at], dtype=np.float64)
            rows.append(
                {
                    "round": number,
                    "labelled": float(np.mean([r["labelled"] for r in at])),
                    "seeds": len(at),
                    "mean": float(values.mean()),
                    "std": float(values.std()),
                    "min": float(values.min()),
                    "max": float(values.max()),
                }
            )
        summary[strategy] = rows
    return summary


def labels_saved(summary: dict[str, list[dict[str, Any]]], strategy: str = "uncertainty") -> list[dict[str, Any]]:
    """For each round of ``strategy``: the labelled images M, its mean top-1, and the labelled images random needs
    to reach it (None: random never does within its rounds), and the difference."""
    random_x = [row["labelled"] for row in summary["random"]]
    random_y = [row["mean"] for row in summary["random"]]
    saved = []
    for row in summary[strategy][1:]:
        needed = labels_to_reach(random_x, random_y, row["mean"])
        saved.append(
            {
                "strategy": strategy,
                "labelled": row["labelled"],
                "mean": row["mean"],
                "random_needs": needed,
                "saved": None if needed is None else needed - row["labelled"],
            }
        )
    return saved


def table(summary: dict[str, list[dict[str, Any]]], metric: str) -> list[str]:
    """The per-round table, as Markdown: one column per strategy, in ``summary``'s order."""
    names = list(summary)
    lines = [
        "| round | labelled | " + " | ".join(f"{name} {metric} mean ± std (min-max)" for name in names) + " |",
        "| ---: | ---: | " + " | ".join("---" for _ in names) + " |",
    ]
    for rows in zip(*summary.values(), strict=True):
        cells = [f"{row['mean']:.3f} ± {row['std']:.3f} ({row['min']:.3f}-{row['max']:.3f})" for row in rows]
        labelled = " / ".join(f"{count:g}" for count in sorted({row["labelled"] for row in rows}))
        lines.append(f"| {rows[0]['round']} | {labelled} | " + " | ".join(cells) + " |")
    return lines


def saved_lines(saved: list[dict[str, Any]]) -> list[str]:
    """The labels saved, one sentence per round of each strategy compared with random."""
    lines = []
    for entry in saved:
        name, m, top1, needed = entry["strategy"], entry["labelled"], entry["mean"], entry["random_needs"]
        if needed is None:
            lines.append(f"{name} reaches {top1:.3f} with {m:g} labelled images; random never does in its rounds")
        else:
            lines.append(
                f"random needs {needed:.0f} labelled images to reach the {top1:.3f} {name} reaches with {m:g} "
                f"({entry['saved']:+.0f} labels)"
            )
    return lines


def experiment(seeds: Sequence[int], config: Any, work: Path) -> dict[str, list[list[dict[str, Any]]]]:
    """Every seed's round 0 and every strategy's rounds: the records, per strategy, one list per seed.

    A seed's records are kept in ``work/seed-N.json`` with the config they were made with, and reused by a later
    run with the same config (a long run can be stopped and resumed seed by seed)."""
    from services.training.digits import DIGITS
    from services.training.simulate import Oracle, Trainer, run_strategy, start

    trainer: Trainer | None = None
    runs: dict[str, list[list[dict[str, Any]]]] = {s: [] for s in STRATEGIES}
    for seed in seeds:
        saved = work / f"seed-{seed}.json"
        if saved.exists() and json.loads(saved.read_text())["config"] == config.to_dict():
            records = json.loads(saved.read_text())["runs"]
            log.info("seed %d: reusing %s", seed, saved)
        else:
            trainer = trainer or Trainer(DIGITS, config)
            begun = start(seed, trainer, work / f"seed-{seed}")
            records = {
                strategy: [
                    r.to_dict()
                    for r in run_strategy(
                        strategy, begun, Oracle(begun.setup.pool_labels), trainer, work / f"seed-{seed}"
                    )
                ]
                for strategy in STRATEGIES
            }
            work.mkdir(parents=True, exist_ok=True)
            saved.write_text(json.dumps({"config": config.to_dict(), "runs": records}, indent=2) + "\n")
        for strategy in STRATEGIES:
            runs[strategy].append(records[strategy])
    return runs


def main(
    out: Annotated[Path, typer.Option(help="where active_learning.json, rounds.png and the runs' records go")] = Path(
        "data/bench/active-learning"
    ),
    seeds: Annotated[str, typer.Option(help="seeds, comma-separated")] = "0,1,2",
    rounds: Annotated[int, typer.Option(min=1)] = 5,
    budget: Annotated[int, typer.Option(min=1, help="pool images labelled per round")] = 40,
    initial: Annotated[int, typer.Option(min=1, help="labelled images per class to start with")] = 3,
    pool: Annotated[int, typer.Option(min=1, help="pool images per class")] = 50,
    steps: Annotated[int, typer.Option(min=1, help="training steps per model (at least)")] = 300,
    epochs: Annotated[
        float, typer.Option(min=0.0, help="train each model this many passes over its labelled set, if more steps")
    ] = 0.0,
    imbalance: Annotated[float, typer.Option(min=1.0, help="pool: digit 0 this many times as common as 9")] = 1.0,
    network: Annotated[
        str, typer.Option(help="small_cnn, or mobilenet_v2 (the train job's; slow to learn)")
    ] = "small_cnn",
    style: Annotated[str, typer.Option(help="the digits: hard (varied size, noisy) or mnist_like (cleaner)")] = "hard",
    quick: Annotated[bool, typer.Option(help="a tiny run that checks the mechanism (numbers mean nothing)")] = False,
) -> None:
    """Run every strategy on every seed; print the table and the labels saved; write the JSON and rounds.png."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from services.logs import configure_logging
    from services.training import digits, plots
    from services.training.simulate import SimulationConfig

    configure_logging("INFO", json=False)
    if network not in ("small_cnn", "mobilenet_v2"):
        raise typer.BadParameter(f"--network takes small_cnn or mobilenet_v2, not {network!r}")
    styles = {"hard": digits.HARD, "mnist_like": digits.MNIST_LIKE}
    if style not in styles:
        raise typer.BadParameter(f"--style takes hard or mnist_like, not {style!r}")
    config = SimulationConfig(
        rounds=rounds,
        budget=budget,
        initial=initial,
        pool=pool,
        steps=steps,
        epochs=epochs,
        imbalance=imbalance,
        network=network,  # type: ignore[arg-type]
        style=styles[style],
    )
    chosen_seeds = [int(s) for s in seeds.split(",") if s.strip()]
    if quick:
        config = replace(config, initial=1, pool=3, test=3, budget=4, rounds=2, steps=3, batch_size=8)
        chosen_seeds = chosen_seeds[:1]
    out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    runs = experiment(chosen_seeds, config, out / "runs")
    summary = summarise(runs)
    saved = [entry for strategy in STRATEGIES[:-1] for entry in labels_saved(summary, strategy)]
    result = {
        "config": config.to_dict(),
        "seeds": chosen_seeds,
        "seconds": round(time.monotonic() - began, 1),
        "load_average": os.getloadavg(),
        "summary": summary,
        "macro_f1": summarise(runs, "macro_f1"),
        "labels_saved": saved,
        "runs": runs,
    }
    (out / "active_learning.json").write_text(json.dumps(result, indent=2) + "\n")
    plots.labelling_curves(
        {s: summary[s] for s in STRATEGIES},
        out / "rounds.png",
        title=f"top-1 on {config.test * 10} held-out digits, {len(chosen_seeds)} seeds (mean, min-max band)",
    )
    print("\n".join([*table(summary, "top-1"), "", *saved_lines(saved)]))
    print(f"\n{result['seconds']} s; wrote {out / 'active_learning.json'} and {out / 'rounds.png'}")


if __name__ == "__main__":
    typer.run(main)
