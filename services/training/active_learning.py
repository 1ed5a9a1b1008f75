"""Active learning: grow a boxed dataset from a pool of images labelled as a whole, round by round.

Each round:

1. the current version of the detector predicts on the pool images not accepted yet, in batches: in this process
   (the published SavedModel's ``detect_encoded``) or through the serving path (the gateway's ``:detect``, which
   batches the concurrent requests; :mod:`.pool_predict`);
2. each prediction is judged (:func:`services.training.review.judge`): accepted as new boxes, or sent to review
   (``round-N/review/``: JSON, contact sheet, LabelImg-ready VOC folder);
3. the accepted images are added to ``train`` of a new dataset version (validation stays as it is, so every round's
   AP compares with the last; :func:`~services.training.datasets.derive.derive_version`);
4. a new run is trained from the current version's weights, evaluated on validation, and exported through the gate
   as the next version of the model.

It stops when the rounds are done, when nothing more is accepted, when a round raises validation mAP@0.5 by less than
``min_gain``, or when the gate refuses a round's model. Every round's dataset version, run and model version stays, so
a round can be rolled back. ``active_learning.json`` (rewritten after every step), a table in the job's log and
``rounds.png`` report it. A job stopped mid-round leaves the versions of the rounds before it as they were: a dataset
version and a model version only ever appear whole (staged, then renamed into place). The round's training needs its
dataset version, so a round stopped after making it leaves that version behind; the report, written before each step,
marks every round ``complete`` or not and names in ``current`` the versions of the last round that completed and
published (the start's before any), so such a version is never mistaken for a finished round's.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from services.errors import InvalidParameter
from services.jobs.params import ActiveLearningParams, EvaluateParams, ExportParams, TrainParams
from services.training import pipeline, plots
from services.training.checks import check_train, dataset_classes, detector_version, resolve_path
from services.training.datasets.derive import derive_version, example_image, read_version_images
from services.training.datasets.manifest import Manifest
from services.training.datasets.problems import ProblemReport
from services.training.datasets.report import problems_table, render_text
from services.training.datasets.storage import DatasetStore
from services.training.datasets.tfrecord import iter_records
from services.training.datasets.validate import ImageProblem, ValidImage, valid_image_from_bytes
from services.training.gate import GateRefused
from services.training.pool import keep_known, read_pool_folder
from services.training.review import Thresholds, Verdict, judge, rounds_table, write_review
from services.training.selection import select_for_review
from services.vision.boxes import Detection

log = logging.getLogger(__name__)

REPORT = "active_learning.json"
Predict = Callable[[Sequence[ValidImage], int], list[list[Detection]]]
"""``(images, model version) -> detections per image`` (dataset class names, pixels of each image)."""


class _Part:
    """The job's reporter for one step of one round: artifacts in ``round-N/``, progress within the round's share."""

    def __init__(self, parent: pipeline.Reporter, folder: Path, start: float, end: float, label: str) -> None:
        self._parent, self._start, self._end, self._label = parent, start, end, label
        self.artifacts = folder
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def id(self) -> str:
        return self._parent.id

    def update(self, **fields: Any) -> None:
        fields.pop("metrics", None)  # the round's own numbers go into the job's meta, not each step's
        progress = fields.pop("progress", None)
        if progress is not None:
            fields["progress"] = self._start + (self._end - self._start) * float(progress) / 100.0
        if "stage" in fields:
            fields["stage"] = f"{self._label} {fields['stage']}"
        self._parent.update(**fields)

    def write_json(self, name: str, body: Any) -> Path:
        return self._parent.write_json(f"{self.artifacts.name}/{name}", body)


def load_pool(
    params: ActiveLearningParams, data_dir: Path, classes: Sequence[str], report: ProblemReport, scratch: Path
) -> list[ValidImage]:
    """The usable pool images (a folder or a pool dataset); what was left out is in ``report``."""
    if params.pool is not None:
        return read_pool_folder(resolve_path(params.pool, data_dir), classes, report, scratch)
    assert params.pool_dataset is not None
    store = DatasetStore(data_dir)
    manifest = store.manifest(params.pool_dataset, params.pool_dataset_version)
    images = read_version_images(store.path(manifest.name, manifest.version), manifest).get("pool", [])
    return keep_known(images, classes, report)


def local_predictor(model_root: Path, model: str, classes: Sequence[str], batch: int) -> Predict:
    """Predict with the published SavedModel in this process (its ``detect_encoded``), ``batch`` images at a time."""
    import tensorflow as tf

    from services.training.scoring import Example, export_predictor

    loaded: dict[int, Any] = {}

    def predict(images: Sequence[ValidImage], version: int) -> list[list[Detection]]:
        if version not in loaded:
            loaded.clear()
            loaded[version] = export_predictor(tf.saved_model.load(str(model_root / model / str(version))), classes)
        _, predictor = loaded[version]
        found: list[list[Detection]] = []
        for start in range(0, len(images), batch):
            chunk = [
                Example(i.filename, i.encoded(), i.width, i.height, (), None) for i in images[start : start + batch]
            ]
            for boxes in predictor(chunk):
                found.append(
                    [Detection(classes[b.class_id - 1], b.class_id, float(b.score or 0.0), b.box) for b in boxes]
                )
        return found

    return predict


def _class_counts(data_dir: Path, dataset: str, version: int, classes: Sequence[str]) -> dict[str, dict[str, int]]:
    manifest = DatasetStore(data_dir).manifest(dataset, version)
    train = manifest.counts["train"].per_class
    return {
        c: {"images": train[c].images, "boxes": train[c].boxes} if c in train else {"images": 0, "boxes": 0}
        for c in classes
    }


def _accepted_image(image: ValidImage, verdict: Verdict, report: ProblemReport) -> ValidImage | None:
    try:
        return valid_image_from_bytes(f"pool/{image.filename}", image.encoded(), verdict.objects())
    except ImageProblem as exc:
        report.error(exc.code, image.filename, "", exc.message)
        return None


def _content_hashes(store: DatasetStore, manifest: Manifest) -> set[str]:
    """The SHA-256 of every image of a dataset version (an accepted pool image already there adds nothing)."""
    folder = store.path(manifest.name, manifest.version)
    return {
        example_image(raw).sha256
        for split in manifest.counts
        for shard in manifest.record_files(split)
        for raw in iter_records(folder / shard)
    }


def run(
    params: ActiveLearningParams,
    reporter: pipeline.Reporter,
    data_dir: Path,
    model_root: Path,
    *,
    predict: Predict | None = None,
) -> dict[str, Any]:
    """Run the rounds (see the module's text); the job's result: the report's summary and where everything is.

    Args:
        params: checked at submit (:func:`services.training.checks.check_active_learning`).
        reporter: the job's reporter.
        data_dir: the data folder (datasets, runs, the pool).
        model_root: the model repository.
        predict: how to predict (default: in this process, for ``predict_via = "local"``).
    """
    assert params.version is not None and params.dataset_version is not None and params.run_prefix is not None
    store = DatasetStore(data_dir)
    manifest = store.manifest(params.dataset, params.dataset_version)
    classes = dataset_classes(manifest)
    _, config = detector_version(params.model, params.version, model_root, "model")
    problems = ProblemReport()
    reporter.update(progress=1.0, stage="reading the pool", force=True)
    with tempfile.TemporaryDirectory(prefix="pool-", dir=reporter.artifacts) as scratch:
        pool = load_pool(params, data_dir, classes, problems, Path(scratch))
        for image in pool:
            image.data = image.encoded()  # re-encoded files live in the scratch folder: hold the bytes instead
    reporter.write_json("problems.json", problems.to_dict())
    if len(problems):
        log.info("pool problems (left out)\n%s", render_text(problems_table(problems, limit=50)))
    if not pool:
        raise InvalidParameter("nothing in the pool is usable", details={"problems": problems.to_dict()})
    if predict is None:
        predict = local_predictor(model_root, params.model, classes, params.predict_batch)
    thresholds = Thresholds(params.min_score, params.unlabelled_min_score, params.candidate_score)
    labelled = sum(1 for i in pool if i.labels)
    log.info("pool: %d usable images (%d with a label), %d problems", len(pool), labelled, len(problems))

    share = 96.0 / (params.rounds + 0.2)
    baseline = pipeline.evaluate(
        EvaluateParams(
            model=params.model, version=params.version, dataset=params.dataset, dataset_version=manifest.version
        ),
        _Part(reporter, reporter.artifacts / "round-0", 2.0, 2.0 + share * 0.2, "baseline"),
        data_dir,
        model_root,
    )
    report: dict[str, Any] = {
        "model": params.model,
        "dataset": params.dataset,
        "classes": list(classes),
        "pool": {"images": len(pool), "labelled": labelled, "problems": problems.counts()},
        "start": {
            "model_version": params.version,
            "dataset_version": manifest.version,
            "map50": baseline.map50,
            "ap50": baseline.ap50(),
        },
        "current": {"round": 0, "model_version": params.version, "dataset_version": manifest.version},
        "rounds": [],
        "stopped": None,
    }
    _write(reporter, report)
    version, dataset_version, current = params.version, manifest.version, baseline
    remaining = list(pool)
    in_dataset = _content_hashes(store, manifest)
    for number in range(1, params.rounds + 1):
        start = 2.0 + share * (number - 0.8)

        def part(a: float, b: float, n: int = number, s: float = start) -> _Part:
            return _Part(reporter, reporter.artifacts / f"round-{n}", s + share * a, s + share * b, f"round {n}:")

        reporter.update(
            progress=start,
            stage=f"round {number}: predicting",
            round=number,
            force=True,
            message=f"{len(remaining)} pool images with version {version}",
        )
        detections = predict(remaining, version)
        verdicts = [
            judge(image.filename, image.labels[0] if image.labels else None, found, thresholds)
            for image, found in zip(remaining, detections, strict=True)
        ]
        folder = reporter.artifacts / f"round-{number}"
        to_review, selection = select_for_review(
            verdicts,
            detections,
            [i.encoded() for i in remaining],
            strategy=params.selection,
            budget=params.budget,
            seed=(params.seed, number),
            decision_score=params.decision_score,
            max_similarity=params.max_similarity,
        )
        review = write_review(folder / "review", to_review, {i.filename: i.encoded() for i in remaining})
        accepted = [
            added
            for image, verdict in zip(remaining, verdicts, strict=True)
            if verdict.accepted and (added := _accepted_image(image, verdict, problems)) is not None
        ]
        entry = _round_entry(
            number,
            classes,
            verdicts,
            _class_counts(data_dir, params.dataset, dataset_version, classes),
            {v.filename for v in to_review},
        )
        entry.update(
            selection=selection,
            complete=False,
            state="judged",
            model_version_before=version,
            dataset_version_before=dataset_version,
            review_files=review,
            map50_before=current.map50,
            ap50_before=current.ap50(),
        )
        report["rounds"].append(entry)
        log.info(
            "round %d: %d accepted, %d to review (of %d)", number, entry["accepted"], entry["review"], len(verdicts)
        )
        fresh = [a for a in accepted if a.sha256 not in in_dataset]
        entry["already_in_dataset"] = len(accepted) - len(fresh)
        if not accepted:
            entry.update(state="nothing_accepted", complete=True)
            report["stopped"] = f"round {number} accepted nothing"
            break
        if not fresh:
            # The same model would judge them the same next round: another version of the same images is no gain.
            entry.update(state="nothing_new", complete=True)
            report["stopped"] = f"round {number} accepted only images the dataset already holds ({len(accepted)})"
            break
        _write(reporter, report)
        reporter.update(progress=start + share * 0.1, stage=f"round {number}: new dataset version", force=True)
        derived = derive_version(
            store, params.dataset, {"train": fresh}, base_version=dataset_version, token=f"{reporter.id}-r{number}"
        )
        in_dataset |= {a.sha256 for a in fresh}
        entry["dataset_version"] = derived.manifest.version
        entry["state"] = "dataset"
        _write(reporter, report)
        run_name = f"{params.run_prefix}-r{number}"
        train = check_train(
            TrainParams(
                dataset=params.dataset,
                dataset_version=derived.manifest.version,
                run=run_name,
                init_from_model=params.model,
                init_from_version=version,
                backbone=config["backbone"],
                alpha=config["alpha"],
                input_size=config["input_size"],
                weights="none",
                epochs=params.epochs,
                steps_per_epoch=params.steps_per_epoch,
                batch_size=params.batch_size,
                train_size=params.train_size,
                learning_rate=params.learning_rate,
                warmup_steps=params.warmup_steps,
                patience=params.patience,
                seed=params.seed + number,
                max_detections=config.get("max_detections", 100),
            ),
            data_dir,
            model_root,
        )
        entry.update(run=run_name, state="training")
        _write(reporter, report)
        pipeline.train(train, part(0.15, 0.8), data_dir, model_root)
        data = {"dataset": params.dataset, "dataset_version": derived.manifest.version}
        current = pipeline.evaluate(EvaluateParams(run=run_name, **data), part(0.8, 0.88), data_dir, model_root)
        entry.update(map50_after=current.map50, ap50_after=current.ap50(), state="trained")
        entry["gain"] = round((current.map50 or 0.0) - (entry["map50_before"] or 0.0), 6)
        _write(reporter, report)
        try:
            exported = pipeline.export(
                ExportParams(run=run_name, model=params.model, threshold=params.threshold, force=params.force, **data),
                part(0.88, 1.0),
                data_dir,
                model_root,
            )
        except GateRefused as exc:
            entry.update(state="gate_refused", gate=exc.details, complete=True)
            report["stopped"] = f"round {number}: the gate refused its model ({exc.message})"
            break
        version, dataset_version = exported.version, derived.manifest.version
        entry.update(model_version=version, state="published", complete=True)
        report["current"] = {"round": number, "model_version": version, "dataset_version": dataset_version}
        accepted_names = {v.filename for v in verdicts if v.accepted}
        remaining = [i for i in remaining if i.filename not in accepted_names]
        _write(reporter, report)
        reporter.update(
            counts={"rounds": number, "accepted": sum(r["accepted"] for r in report["rounds"])},
            metrics={"map50": current.map50},
            force=True,
        )
        if not remaining:
            report["stopped"] = "every pool image was accepted"
            break
        if entry["gain"] < params.min_gain:
            report["stopped"] = f"round {number} raised mAP@0.5 by {entry['gain']:+.4f} (< min_gain {params.min_gain})"
            break
    report["stopped"] = report["stopped"] or f"{params.rounds} rounds done"
    report["final"] = {"model_version": version, "dataset_version": dataset_version}
    _write(reporter, report)
    log.info("active learning %s\n%s", report["stopped"], render_text(rounds_table(report)))
    _plot(report, reporter.artifacts / "rounds.png")
    return {
        "model": params.model,
        "model_version": version,
        "dataset": params.dataset,
        "dataset_version": dataset_version,
        "rounds": [
            {
                k: r.get(k)
                for k in (
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
            }
            for r in report["rounds"]
        ],
        "stopped": report["stopped"],
        "report": str(reporter.artifacts / REPORT),
        "plot": str(reporter.artifacts / "rounds.png"),
    }


def _round_entry(
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


def _write(reporter: pipeline.Reporter, report: dict[str, Any]) -> None:
    reporter.write_json(REPORT, report)


def _plot(report: dict[str, Any], path: Path) -> None:
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
