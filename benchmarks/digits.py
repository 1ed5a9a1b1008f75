"""Top-1 of a classifier on small grey images: generated 28 x 28 digits (issue 17, point 4).

``python -m benchmarks.digits --out data/bench/digits``: generates ``--per-class`` grey PNG digits per class
(:mod:`services.training.digits`), imports them as a folder-per-class dataset split train / validation / test
(``--split``, ``--test-split``, seeded), trains a MobileNetV2 from scratch on train (grey read as RGB, letterboxed up
to ``--input-size``), exports and publishes it, and scores top-1 on the held-out test split twice: the run's weights
and the published SavedModel (what the model server serves). Prints the numbers and writes ``digits.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from benchmarks.reporter import FolderReporter
from services.logs import configure_logging

log = logging.getLogger("benchmarks.digits")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/bench/digits"))
    parser.add_argument("--per-class", type=int, default=300)
    parser.add_argument("--split", type=float, default=0.7, help="train fraction")
    parser.add_argument("--test-split", type=float, default=0.2, help="held-out test fraction")
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--alpha", type=float, default=0.35)
    parser.add_argument("--epochs", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=4e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    configure_logging("INFO", json=False)

    from services.jobs.params import EvaluateParams, ExportParams, TrainParams
    from services.store.datasets.annotations import SourceFormat
    from services.store.datasets.request import ImportRequest
    from services.store.datasets.storage import DatasetStore
    from services.training import pipeline
    from services.training.datasets.importer import import_dataset
    from services.training.digits import write_digit_folders

    data, models = args.out / "data", args.out / "models"
    models.mkdir(parents=True, exist_ok=True)
    name = f"digits-{args.per_class}-s{args.seed}"
    store = DatasetStore(data)
    if name not in store.names():
        write_digit_folders(args.out / "folders" / name, seed=args.seed, per_class=args.per_class)
        request = ImportRequest(
            name=name,
            format=SourceFormat.FOLDERS,
            source=args.out / "folders" / name,
            split=args.split,
            test_split=args.test_split,
            seed=args.seed,
        )
        import_dataset(request, store)
    counts = {s: c.images for s, c in store.manifest(name).counts.items()}
    run = f"{name}-{args.input_size}px-a{args.alpha:g}-e{args.epochs}-{time.strftime('%H%M%S')}"
    started = time.monotonic()
    trained = pipeline.train(
        TrainParams(
            dataset=name,
            run=run,
            input_size=args.input_size,
            alpha=args.alpha,
            weights="none",
            epochs=args.epochs,
            batch_size=args.batch,
            learning_rate=args.learning_rate,
            patience=0,
            seed=args.seed,
        ),
        FolderReporter(args.out, f"train-{run}"),
        data,
        models,
    )
    train_seconds = time.monotonic() - started
    on_test = {"dataset": name, "split": "test"}
    evaluating = FolderReporter(args.out, f"eval-{run}")
    by_run = pipeline.evaluate(EvaluateParams(run=run, **on_test), evaluating, data, models)
    exported = pipeline.export(
        ExportParams(run=run, model=name, force=True), FolderReporter(args.out, f"export-{run}"), data, models
    )
    served = pipeline.evaluate(
        EvaluateParams(model=name, version=exported.version, **on_test),
        FolderReporter(args.out, f"eval-served-{run}"),
        data,
        models,
    )
    result = {
        "dataset": {"name": name, "per_class": args.per_class, "images": counts, "image": "28x28 grey PNG"},
        "settings": {
            "backbone": "mobilenet_v2",
            "alpha": args.alpha,
            "input_size": args.input_size,
            "weights": "none",
            "epochs": args.epochs,
            "batch_size": args.batch,
            "learning_rate": args.learning_rate,
            "seed": args.seed,
        },
        "train_seconds": round(train_seconds, 1),
        "epochs_done": trained.epochs_done,
        "top1_test_run": by_run.accuracy,
        "top1_test_served_export": served.accuracy,
        "published": {"model": name, "version": exported.version},
    }
    (args.out / "digits.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
