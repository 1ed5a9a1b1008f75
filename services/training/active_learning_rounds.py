"""The steps of one round of active learning (:mod:`.active_learning`): predict on the pool images left and judge
them, write the review, derive the dataset version with the accepted images, retrain from the current model version,
evaluate, and publish through the gate. Each step writes the report (:mod:`.active_learning_report`) before it goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.jobs.params import ActiveLearningParams, EvaluateParams, ExportParams, TrainParams
from services.store.checks import check_train
from services.store.datasets.manifest import Manifest
from services.store.datasets.problems import ProblemReport
from services.store.datasets.storage import DatasetStore
from services.store.datasets.validate import ImageProblem, ValidImage, valid_image_from_bytes
from services.training import pipeline
from services.training.active_learning_report import class_counts, round_entry, write_report
from services.training.datasets.derive import derive_version, example_image
from services.training.datasets.tfrecord import iter_records
from services.training.gate import GateRefused
from services.training.results import EvaluationReport
from services.training.review import Thresholds, Verdict, judge, write_review
from services.training.selection import select_for_review
from services.vision.boxes import Detection

log = logging.getLogger("services.training.active_learning")  # one logger for the job: its lines keep their name

Predict = Callable[[Sequence[ValidImage], int], list[list[Detection]]]
"""``(images, model version) -> detections per image`` (dataset class names, pixels of each image)."""


class StepReporter:
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


def _accepted_image(image: ValidImage, verdict: Verdict, report: ProblemReport) -> ValidImage | None:
    try:
        return valid_image_from_bytes(f"pool/{image.filename}", image.encoded(), verdict.objects())
    except ImageProblem as exc:
        report.error(exc.code, image.filename, "", exc.message)
        return None


def content_hashes(store: DatasetStore, manifest: Manifest) -> set[str]:
    """The SHA-256 of every image of a dataset version (an accepted pool image already there adds nothing)."""
    folder = store.path(manifest.name, manifest.version)
    return {
        example_image(raw).sha256
        for split in manifest.counts
        for shard in manifest.record_files(split)
        for raw in iter_records(folder / shard)
    }


def _retrain_params(
    params: ActiveLearningParams, config: dict[str, Any], dataset_version: int, run: str, version: int, number: int
) -> TrainParams:
    """Round ``number``'s training: the detector's architecture, from model version ``version``'s weights."""
    return TrainParams(
        dataset=params.dataset,
        dataset_version=dataset_version,
        run=run,
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
    )


@dataclass
class Rounds:
    """The rounds of one job: what they share, and what the last published round left (``version``,
    ``dataset_version``, its evaluation ``current``, the pool images not accepted yet, the dataset's image hashes)."""

    params: ActiveLearningParams
    reporter: pipeline.Reporter
    data_dir: Path
    model_root: Path
    store: DatasetStore
    classes: Sequence[str]
    config: dict[str, Any]
    predict: Predict
    thresholds: Thresholds
    problems: ProblemReport
    report: dict[str, Any]
    share: float
    version: int
    dataset_version: int
    current: EvaluationReport
    remaining: list[ValidImage]
    in_dataset: set[str]

    def start(self, number: int) -> float:
        """Round ``number``'s start in the job's progress (each round has ``share`` of it)."""
        return 2.0 + self.share * (number - 0.8)

    def part(self, number: int, a: float, b: float) -> StepReporter:
        """The reporter of a step of round ``number``, from ``a`` to ``b`` of the round's share."""
        start = self.start(number)
        return StepReporter(
            self.reporter,
            self.reporter.artifacts / f"round-{number}",
            start + self.share * a,
            start + self.share * b,
            f"round {number}:",
        )

    def play(self, number: int) -> str | None:
        """Round ``number``, every step written to the report; why the rounds stop after it (``None``: go on)."""
        verdicts, accepted, entry = self.judge(number)
        fresh = [a for a in accepted if a.sha256 not in self.in_dataset]
        entry["already_in_dataset"] = len(accepted) - len(fresh)
        if not accepted:
            entry.update(state="nothing_accepted", complete=True)
            return f"round {number} accepted nothing"
        if not fresh:
            # The same model would judge them the same next round: another version of the same images is no gain.
            entry.update(state="nothing_new", complete=True)
            return f"round {number} accepted only images the dataset already holds ({len(accepted)})"
        dataset_version = self.derive(number, fresh, entry)
        run_name = self.retrain(number, dataset_version, entry)
        refused = self.publish(number, run_name, dataset_version, entry)
        if refused is not None:
            return refused
        accepted_names = {v.filename for v in verdicts if v.accepted}
        self.remaining = [i for i in self.remaining if i.filename not in accepted_names]
        write_report(self.reporter, self.report)
        self.reporter.update(
            counts={"rounds": number, "accepted": sum(r["accepted"] for r in self.report["rounds"])},
            metrics={"map50": self.current.map50},
            force=True,
        )
        if not self.remaining:
            return "every pool image was accepted"
        if entry["gain"] < self.params.min_gain:
            return f"round {number} raised mAP@0.5 by {entry['gain']:+.4f} (< min_gain {self.params.min_gain})"
        return None

    def judge(self, number: int) -> tuple[list[Verdict], list[ValidImage], dict[str, Any]]:
        """Predict on the pool images left, judge each, write the review of those chosen; the verdicts, the accepted
        images (with their boxes) and the round's entry (appended to the report)."""
        params, remaining = self.params, self.remaining
        self.reporter.update(
            progress=self.start(number),
            stage=f"round {number}: predicting",
            round=number,
            force=True,
            message=f"{len(remaining)} pool images with version {self.version}",
        )
        detections = self.predict(remaining, self.version)
        verdicts = [
            judge(image.filename, image.labels[0] if image.labels else None, found, self.thresholds)
            for image, found in zip(remaining, detections, strict=True)
        ]
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
        folder = self.reporter.artifacts / f"round-{number}"
        review = write_review(folder / "review", to_review, {i.filename: i.encoded() for i in remaining})
        accepted = [
            added
            for image, verdict in zip(remaining, verdicts, strict=True)
            if verdict.accepted and (added := _accepted_image(image, verdict, self.problems)) is not None
        ]
        before = class_counts(self.data_dir, params.dataset, self.dataset_version, self.classes)
        entry = round_entry(number, self.classes, verdicts, before, {v.filename for v in to_review})
        entry.update(
            selection=selection,
            complete=False,
            state="judged",
            model_version_before=self.version,
            dataset_version_before=self.dataset_version,
            review_files=review,
            map50_before=self.current.map50,
            ap50_before=self.current.ap50(),
        )
        self.report["rounds"].append(entry)
        log.info(
            "round %d: %d accepted, %d to review (of %d)", number, entry["accepted"], entry["review"], len(verdicts)
        )
        return verdicts, accepted, entry

    def derive(self, number: int, fresh: Sequence[ValidImage], entry: dict[str, Any]) -> int:
        """The round's dataset version: the current one with the ``fresh`` accepted images added to ``train``."""
        write_report(self.reporter, self.report)
        self.reporter.update(
            progress=self.start(number) + self.share * 0.1, stage=f"round {number}: new dataset version", force=True
        )
        derived = derive_version(
            self.store,
            self.params.dataset,
            {"train": fresh},
            base_version=self.dataset_version,
            token=f"{self.reporter.id}-r{number}",
        )
        self.in_dataset |= {a.sha256 for a in fresh}
        entry["dataset_version"] = derived.manifest.version
        entry["state"] = "dataset"
        write_report(self.reporter, self.report)
        return derived.manifest.version

    def retrain(self, number: int, dataset_version: int, entry: dict[str, Any]) -> str:
        """Train the round's run from the current model version's weights and evaluate it on validation; its name."""
        params = self.params
        run_name = f"{params.run_prefix}-r{number}"
        train = check_train(
            _retrain_params(params, self.config, dataset_version, run_name, self.version, number),
            self.data_dir,
            self.model_root,
        )
        entry.update(run=run_name, state="training")
        write_report(self.reporter, self.report)
        pipeline.train(train, self.part(number, 0.15, 0.8), self.data_dir, self.model_root)
        evaluate = EvaluateParams(run=run_name, dataset=params.dataset, dataset_version=dataset_version)
        self.current = pipeline.evaluate(evaluate, self.part(number, 0.8, 0.88), self.data_dir, self.model_root)
        entry.update(map50_after=self.current.map50, ap50_after=self.current.ap50(), state="trained")
        entry["gain"] = round((self.current.map50 or 0.0) - (entry["map50_before"] or 0.0), 6)
        write_report(self.reporter, self.report)
        return run_name

    def publish(self, number: int, run_name: str, dataset_version: int, entry: dict[str, Any]) -> str | None:
        """Export the round's run through the gate as the next model version; why the rounds stop if it refuses."""
        params = self.params
        export = ExportParams(
            run=run_name,
            model=params.model,
            threshold=params.threshold,
            force=params.force,
            dataset=params.dataset,
            dataset_version=dataset_version,
        )
        try:
            exported = pipeline.export(export, self.part(number, 0.88, 1.0), self.data_dir, self.model_root)
        except GateRefused as exc:
            entry.update(state="gate_refused", gate=exc.details, complete=True)
            return f"round {number}: the gate refused its model ({exc.message})"
        self.version, self.dataset_version = exported.version, dataset_version
        entry.update(model_version=self.version, state="published", complete=True)
        self.report["current"] = {"round": number, "model_version": self.version, "dataset_version": dataset_version}
        return None
