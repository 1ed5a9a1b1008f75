"""Whole-image training against tile training on generated posters, each evaluated both ways (issue 12, point 4).

``python -m benchmarks.tiles --out data/bench/tiles``: generates (seeded) posters of 2000x1300 pixels with dense
clutter and 3-6 targets of 20-45 px (:data:`services.training.synthetic.POSTER`), imports them as a detection dataset
(about 40 train, 15 held out), trains one run with ``views: whole`` (today's training: letterboxed to S) and one with
``views: tiles`` (native-scale crops) on the same budget, and scores both on the held-out posters (a) letterboxed
whole and (b) through the gateway's views (tiles + whole image, merged), with the project's own scoring
(``services.training.scoring``). Prints a table and writes ``tiles.json``. Training budgets are small on purpose
(a shared 2-core machine): see ``--epochs``, ``--steps``, ``--batch``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from benchmarks.reporter import FolderReporter
from services.logs import configure_logging
from services.training.synthetic import CLASSES, generate_posters

log = logging.getLogger("benchmarks.tiles")


def make_dataset(base: Path, *, seed: int, train: int, held_out: int) -> Path:
    """Write the posters as VOC (with the synthetic classes' label map) and import them; the data folder."""
    from services.store.datasets.annotations import ObjectAnnotation, SourceFormat
    from services.store.datasets.request import ImportRequest
    from services.store.datasets.storage import DatasetStore
    from services.store.datasets.voc import write_voc
    from services.training.datasets.importer import import_dataset

    source = base / "voc"
    (source / "images").mkdir(parents=True, exist_ok=True)
    (source / "annotations").mkdir(parents=True, exist_ok=True)
    (source / "label_map.pbtxt").write_text(
        "".join(f"item {{\n  id: {i}\n  name: '{name}'\n}}\n" for i, name in enumerate(CLASSES, start=1))
    )
    started = time.monotonic()
    for i, poster in enumerate(generate_posters(seed, train + held_out)):
        name = f"poster_{i:03d}.jpg"
        poster.image.save(source / "images" / name, quality=92)
        objects = [ObjectAnnotation(o.label, o.box) for o in poster.objects]
        write_voc(source / "annotations" / f"poster_{i:03d}.xml", name, *poster.image.size, objects, folder="images")
    log.info("generated %d posters in %.0f s", train + held_out, time.monotonic() - started)
    data = base / "data"
    request = ImportRequest(
        name="posters", format=SourceFormat.VOC, source=source, split=train / (train + held_out), seed=seed
    )
    import_dataset(request, DatasetStore(data))
    return data


def score_both_ways(data: Path, run: str) -> dict[str, dict[str, Any]]:
    """A run's held-out AP@0.5, recall and precision (at min_score 0.5), letterboxed whole and through the views."""
    from services.store.runs import RunStore
    from services.training.export import DetectorModule
    from services.training.models import load_final
    from services.training.scoring import encoded_detector, read_split, score_detector, view_detector, views_used

    spec, model = load_final(RunStore(data).path(run) / "final")
    _, examples = read_split(data, "posters", None, "validation")
    signatures = DetectorModule(model, spec.config).signatures()  # type: ignore[arg-type]
    predictors = {
        "whole": encoded_detector(signatures["detect_encoded"], spec.classes, spec.classes),
        "tiles": view_detector(
            signatures["serving_default"], spec.input_size, spec.classes, spec.classes, views="tiles"
        ),
    }
    scores = {}
    for way, predict in predictors.items():
        report, _ = score_detector(predict, examples, spec.classes, min_score=0.5)
        scores[way] = {
            "map50": report["map50"],
            "recall": report["recall"],
            "precision": report["precision"],
            "images": report["images"],
            "objects": report["objects"],
            "views": views_used(examples, spec.input_size, "tiles" if way == "tiles" else "whole"),
        }
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/bench/tiles"))
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--train", type=int, default=40)
    parser.add_argument("--held-out", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=25, help="steps per epoch")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--train-size", type=int, default=256, help="crop size (both runs)")
    parser.add_argument("--init-from-model", default="demo", help="start both runs from this model ('' for none)")
    parser.add_argument("--model-root", type=Path, default=Path("models"))
    args = parser.parse_args(argv)
    configure_logging("INFO", json=False)
    from services.jobs.params import TrainParams
    from services.store.checks import check_train
    from services.training import pipeline

    data = args.out / "data"
    if not (data / "datasets" / "posters").is_dir():
        data = make_dataset(args.out, seed=args.seed, train=args.train, held_out=args.held_out)
    results: dict[str, Any] = {"budget": vars(args) | {"out": str(args.out), "model_root": str(args.model_root)}}
    for views in ("whole", "tiles"):
        run = f"posters-{views}-{int(time.time())}"
        params = TrainParams(
            dataset="posters",
            run=run,
            views=views,
            epochs=args.epochs,
            steps_per_epoch=args.steps,
            batch_size=args.batch,
            train_size=args.train_size,
            patience=0,
            seed=args.seed,
            weights="none",
            init_from_model=args.init_from_model or None,
        )
        params = check_train(params, data, args.model_root)
        started = time.monotonic()
        result = pipeline.train(params, FolderReporter(args.out, run), data, args.model_root)
        results[views] = {
            "run": run,
            "train_seconds": result["train_seconds"],
            "wall_seconds": round(time.monotonic() - started, 1),
            "views_reason": result["views_reason"],
            "eval": score_both_ways(data, run),
        }
        (args.out / "tiles.json").write_text(json.dumps(results, indent=2, default=str))
    rows = [
        "| trained on | evaluated | AP@0.5 | recall | precision | training time |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for views in ("whole", "tiles"):
        for way in ("whole", "tiles"):
            e = results[views]["eval"][way]
            rows.append(
                f"| {views} | {way} | {e['map50']:.3f} | {e['recall']:.3f} | {e['precision'] or 0:.3f} | "
                f"{results[views]['train_seconds']:.0f} s |"
            )
    table = "\n".join(rows)
    (args.out / "tiles.md").write_text(table + "\n")
    log.info("results:\n%s", table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
