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
``rounds.png`` report it (:mod:`.active_learning_report`). A job stopped mid-round leaves the versions of the rounds
before it as they were: a dataset version and a model version only ever appear whole (staged, then renamed into place).
The round's training needs its dataset version, so a round stopped after making it leaves that version behind; the
report, written before each step, marks every round ``complete`` or not and names in ``current`` the versions of the
last round that completed and published (the start's before any), so such a version is never mistaken for a finished
round's. This module reads the pool, evaluates the start and runs the rounds; the steps of a round are in
:mod:`.active_learning_rounds`.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from services.errors import InvalidParameter
from services.jobs.params import ActiveLearningParams, EvaluateParams
from services.store.checks import dataset_classes, detector_version, resolve_path
from services.store.datasets.problems import ProblemReport
from services.store.datasets.report import problems_table, render_text
from services.store.datasets.storage import DatasetStore
from services.store.datasets.validate import ValidImage
from services.store.pool import keep_known, read_pool_folder
from services.training import pipeline
from services.training.active_learning_report import PLOT, job_result, plot_rounds, start_report, write_report
from services.training.active_learning_rounds import Predict, Rounds, StepReporter, content_hashes
from services.training.datasets.derive import read_version_images
from services.training.review import Thresholds, rounds_table
from services.vision.boxes import Detection

log = logging.getLogger(__name__)


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


def _read_pool(
    params: ActiveLearningParams,
    reporter: pipeline.Reporter,
    data_dir: Path,
    classes: Sequence[str],
    problems: ProblemReport,
) -> list[ValidImage]:
    """The usable pool images, their bytes held in memory; what was left out is in ``problems.json`` and the log.

    Raises:
        InvalidParameter: nothing in the pool is usable.
    """
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
    return pool


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
        params: checked at submit (:func:`services.store.checks.check_active_learning`).
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
    pool = _read_pool(params, reporter, data_dir, classes, problems)
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
        StepReporter(reporter, reporter.artifacts / "round-0", 2.0, 2.0 + share * 0.2, "baseline"),
        data_dir,
        model_root,
    )
    report = start_report(params, classes, manifest.version, pool, labelled, problems, baseline)
    write_report(reporter, report)
    rounds = Rounds(
        params=params,
        reporter=reporter,
        data_dir=data_dir,
        model_root=model_root,
        store=store,
        classes=classes,
        config=config,
        predict=predict,
        thresholds=thresholds,
        problems=problems,
        report=report,
        share=share,
        version=params.version,
        dataset_version=manifest.version,
        current=baseline,
        remaining=list(pool),
        in_dataset=content_hashes(store, manifest),
    )
    for number in range(1, params.rounds + 1):
        report["stopped"] = rounds.play(number)
        if report["stopped"] is not None:
            break
    report["stopped"] = report["stopped"] or f"{params.rounds} rounds done"
    report["final"] = {"model_version": rounds.version, "dataset_version": rounds.dataset_version}
    write_report(reporter, report)
    log.info("active learning %s\n%s", report["stopped"], render_text(rounds_table(report)))
    plot_rounds(report, reporter.artifacts / PLOT)
    return job_result(report, reporter.artifacts)
