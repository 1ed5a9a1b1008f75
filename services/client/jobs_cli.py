"""``spotter train|evaluate|export|active-learning`` and ``spotter jobs list|show|cancel``.

Jobs are submitted to a gateway (``--url``, API key from ``--api-key`` or ``SPOTTER_API_KEY``) and followed with a
progress bar (polling ``GET /v1/jobs/{id}``), chain included; or, with ``--local``, run in this process on this
machine's data folder and model root (the worker's settings), with the same checks, artifacts and progress bar.
Nothing here imports TensorFlow until a ``--local`` job runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.errors import SpotterError

out = Console()
err = Console(stderr=True)

Url = Annotated[str, typer.Option(envvar="SPOTTER_GATEWAY_URL", help="the gateway")]
ApiKey = Annotated[str | None, typer.Option(envvar="SPOTTER_API_KEY", help="sent as X-API-Key")]
Local = Annotated[bool, typer.Option("--local", help="run in this process instead of submitting to the gateway")]
Follow = Annotated[bool, typer.Option(help="follow the job (and its chain) with a progress bar until it ends")]
AsJson = Annotated[bool, typer.Option("--json", help="print the final records as JSON")]
GATEWAY = "http://127.0.0.1:8080"


def register(app: typer.Typer) -> None:
    """Add ``spotter train``, ``evaluate``, ``export`` and ``spotter jobs ...`` to the ``spotter`` command."""
    app.command("train")(train)
    app.command("evaluate")(evaluate)
    app.command("export")(export)
    app.command("active-learning")(active_learning)
    jobs = typer.Typer(help="List, show and cancel jobs on a gateway.", no_args_is_help=True)
    jobs.command("list")(list_command)
    jobs.command("show")(show_command)
    jobs.command("cancel")(cancel_command)
    app.add_typer(jobs, name="jobs")


def _fail(exc: SpotterError) -> typer.Exit:
    err.print(f"[red]{exc.code}[/red]: {exc.message}", highlight=False)
    if exc.details:
        err.print(json.dumps(exc.details, indent=2, default=str), highlight=False)
    return typer.Exit(1)


def _params(values: dict[str, Any]) -> dict[str, Any]:
    """The job's parameters, checked here first (the gateway checks them again): unset options are left out."""
    from pydantic import TypeAdapter, ValidationError

    from services.training.params import JobParams

    body = {k: v for k, v in values.items() if v is not None}
    try:
        TypeAdapter(JobParams).validate_python(body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors())
        err.print(f"[red]invalid parameters[/red]: {problems}", highlight=False)
        raise typer.Exit(2) from None
    return body


def _run(body: dict[str, Any], *, local: bool, url: str, api_key: str | None, follow: bool, as_json: bool) -> None:
    records = _run_local(body) if local else _run_remote(body, url=url, api_key=api_key, follow=follow)
    if as_json:
        typer.echo(json.dumps(records, indent=2, default=str))
    else:
        for record in records:
            _print_record(record)
    if any(r.get("state") not in ("finished", "queued", "deferred", "started", "scheduled") for r in records):
        raise typer.Exit(1)


def _bar() -> Progress:
    columns = (TextColumn("{task.description:<28}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"))
    return Progress(*columns, TimeElapsedColumn(), TextColumn("{task.fields[message]}"), console=err)


def _run_remote(body: dict[str, Any], *, url: str, api_key: str | None, follow: bool) -> list[dict[str, Any]]:
    from services.client.jobs import JobsClient

    try:
        with JobsClient(url, api_key=api_key) as client:
            submitted = client.submit(body)
            chain = [r["id"] for r in submitted["jobs"]]
            names = ", ".join(f"{r['type']} {r['id']}" for r in submitted["jobs"])
            err.print(f"submitted {names}", highlight=False)
            if not follow:
                return list(submitted["jobs"])
            records = []
            with _bar() as bar:
                for job_id in chain:
                    task = bar.add_task(job_id[:8], total=100.0, message="")
                    record: dict[str, Any] = {}
                    for record in client.follow(job_id):
                        _show(bar, task, record)
                    records.append(record)
                    if record["state"] != "finished":
                        break  # the rest of the chain is canceled
            return records
    except SpotterError as exc:
        raise _fail(exc) from None


def _show(bar: Progress, task: TaskID, record: dict[str, Any]) -> None:
    progress = record.get("progress", {})
    where = f" {progress['epoch']}/{progress['epochs']}" if "epoch" in progress and "epochs" in progress else ""
    bar.update(
        task,
        description=f"{record.get('type')} {record.get('stage') or record['state']}{where}",
        completed=float(progress.get("percent") or 0.0),
        message=(record.get("message") or "")[:60],
    )


class _BarReporter:
    """A local job's :class:`~services.worker.progress.JobRun` that also moves a progress bar."""

    def __init__(self, run: Any, bar: Progress, task: TaskID) -> None:
        self._run, self._bar, self._task = run, bar, task
        self.artifacts = run.artifacts

    @property
    def id(self) -> str:
        return str(self._run.id)

    def update(self, **fields: Any) -> None:
        self._run.update(**fields)
        meta = self._run.meta
        _show(
            self._bar,
            self._task,
            {
                "type": self._run.job_type,
                "state": "started",
                "progress": {
                    "percent": meta.get("progress", 0.0),
                    **{k: meta[k] for k in ("epoch", "epochs") if k in meta},
                },
                "stage": meta.get("stage"),
                "message": meta.get("message"),
            },
        )

    def write_json(self, name: str, body: Any) -> Path:
        path: Path = self._run.write_json(name, body)
        return path


def _run_local(body: dict[str, Any]) -> list[dict[str, Any]]:
    from pydantic import TypeAdapter

    from services.logs import configure_logging
    from services.training.params import JobParams
    from services.worker.config import WorkerSettings
    from services.worker.control import plan
    from services.worker.progress import finish, job_run

    settings = WorkerSettings()
    configure_logging("WARNING", json=False)
    params = TypeAdapter(JobParams).validate_python(body)
    records: list[dict[str, Any]] = []
    try:
        chain = plan(params, settings.data_dir, settings.model_root)
        from services.training import pipeline  # TensorFlow from here on

        with _bar() as bar:
            for job in chain:
                task = bar.add_task(job.type, total=100.0, message="")
                with job_run(job.type, settings.data_dir) as run:
                    reporter = _BarReporter(run, bar, task)
                    if job.type == "train":
                        result = pipeline.train(job.params, reporter, settings.data_dir, settings.model_root)  # type: ignore[arg-type]
                    elif job.type == "active-learning":
                        result = _active_learning_local(job.params, reporter, settings)
                    elif job.type == "evaluate":
                        result = pipeline.evaluate(job.params, reporter, settings.data_dir, settings.model_root)  # type: ignore[arg-type]
                    else:
                        result = pipeline.export(job.params, reporter, settings.data_dir, settings.model_root)  # type: ignore[arg-type]
                    result = finish(run, result)
                bar.update(task, completed=100.0)
                records.append({"id": run.id, "type": job.type, "state": "finished", "result": result})
    except SpotterError as exc:
        raise _fail(exc) from None
    return records


def _active_learning_local(params: Any, reporter: _BarReporter, settings: Any) -> dict[str, Any]:
    """An active-learning job in this process; ``predict_via: gateway`` goes to ``SPOTTER_GATEWAY_URL``."""
    from services.training import active_learning as al
    from services.training.pool_predict import gateway_predictor

    predict = None
    if params.predict_via == "gateway":
        predict = gateway_predictor(settings.gateway_url, settings.gateway_api_key, params)
    return al.run(params, reporter, settings.data_dir, settings.model_root, predict=predict)


def _print_record(record: dict[str, Any]) -> None:
    state = record.get("state")
    colour = {"finished": "green", "failed": "red", "canceled": "yellow", "stopped": "yellow"}.get(str(state), "cyan")
    out.print(f"[bold]{record.get('type')}[/bold] {record.get('id')}: [{colour}]{state}[/{colour}]")
    if record.get("error"):
        out.print(f"  error: {record['error'].get('code')}: {record['error'].get('message')}", highlight=False)
    result = record.get("result") or {}
    keys = ("run", "epochs_done", "best_epoch", "train_seconds", "map50", "map50_coco101", "map_coco", "accuracy")
    for key in (*keys, "stopped", "report"):
        if key in result:
            out.print(f"  {key}: {result[key]}", highlight=False)
    if "version" in result and "model" in result:
        out.print(f"  published {result['model']} version {result['version']} ({result.get('path')})", highlight=False)
        gate = result.get("gate") or {}
        out.print(f"  gate: {gate.get('reason')}", highlight=False)
    for artifact in record.get("artifacts") or []:
        out.print(f"  artifact {artifact['name']} ({artifact['bytes']} bytes) {artifact['url']}", highlight=False)


def train(
    dataset: Annotated[str, typer.Option(help="the dataset to train on (its kind decides detector or classifier)")],
    dataset_version: Annotated[int | None, typer.Option(help="default: the latest")] = None,
    run: Annotated[str | None, typer.Option(help="the run to train into; an unfinished one is resumed")] = None,
    restart: Annotated[bool, typer.Option(help="start the run over")] = False,
    backbone: Annotated[
        str, typer.Option(help="mobilenet_v2, mobilenet_v3_small or mobilenet_v3_large")
    ] = "mobilenet_v2",
    alpha: Annotated[float, typer.Option(help="width multiplier")] = 0.35,
    input_size: Annotated[int, typer.Option(help="the model's canvas (a multiple of 32)")] = 320,
    weights: Annotated[
        str,
        typer.Option(help="imagenet (from Keras's cache if there), none, or the name of a file in <data dir>/weights/"),
    ] = "imagenet",
    epochs: Annotated[int, typer.Option()] = 10,
    steps_per_epoch: Annotated[int | None, typer.Option(help="default: one pass over train")] = None,
    batch_size: Annotated[int, typer.Option()] = 16,
    train_size: Annotated[int | None, typer.Option(help="detector training crops (default: input size)")] = None,
    learning_rate: Annotated[float, typer.Option()] = 2e-3,
    patience: Annotated[int, typer.Option(help="early stopping on validation loss (0: off)")] = 3,
    seed: Annotated[int, typer.Option()] = 0,
    evaluate: Annotated[bool, typer.Option("--evaluate", help="then evaluate on the validation split")] = False,
    export_model: Annotated[str | None, typer.Option(help="then export and publish as this model")] = None,
    threshold: Annotated[float, typer.Option(help="the export gate's allowed drop")] = 0.02,
    force: Annotated[bool, typer.Option(help="publish even if the gate refuses")] = False,
    local: Local = False,
    url: Url = GATEWAY,
    api_key: ApiKey = None,
    follow: Follow = True,
    as_json: AsJson = False,
) -> None:
    """Train a detector or classifier on a dataset (then evaluate and export it, if asked)."""
    body = _params(
        {
            "type": "train",
            "dataset": dataset,
            "dataset_version": dataset_version,
            "run": run,
            "restart": restart or None,
            "backbone": backbone,
            "alpha": alpha,
            "input_size": input_size,
            "weights": weights,
            "epochs": epochs,
            "steps_per_epoch": steps_per_epoch,
            "batch_size": batch_size,
            "train_size": train_size,
            "learning_rate": learning_rate,
            "patience": patience,
            "seed": seed,
            "evaluate": evaluate or None,
            "export": {"model": export_model, "threshold": threshold, "force": force} if export_model else None,
        }
    )
    _run(body, local=local, url=url, api_key=api_key, follow=follow, as_json=as_json)


def evaluate(
    run: Annotated[str | None, typer.Option(help="a trained run")] = None,
    model: Annotated[str | None, typer.Option(help="or a published model")] = None,
    version: Annotated[int | None, typer.Option(help="the model's version (default: the latest)")] = None,
    dataset: Annotated[str | None, typer.Option(help="default: the run's dataset")] = None,
    dataset_version: Annotated[int | None, typer.Option()] = None,
    split: Annotated[str, typer.Option(help="train, validation or test")] = "validation",
    min_score: Annotated[float, typer.Option(help="operating point for precision, recall, mean IoU")] = 0.5,
    local: Local = False,
    url: Url = GATEWAY,
    api_key: ApiKey = None,
    follow: Follow = True,
    as_json: AsJson = False,
) -> None:
    """Evaluate a run or a published model version on a dataset split."""
    body = _params(
        {
            "type": "evaluate",
            "run": run,
            "model": model,
            "version": version,
            "dataset": dataset,
            "dataset_version": dataset_version,
            "split": split,
            "min_score": min_score,
        }
    )
    _run(body, local=local, url=url, api_key=api_key, follow=follow, as_json=as_json)


def export(
    run: Annotated[str, typer.Option(help="a complete run")],
    model: Annotated[str, typer.Option(help="publish as models/<model>/<n+1>/")],
    threshold: Annotated[float, typer.Option(help="the gate's allowed drop vs the served version")] = 0.02,
    force: Annotated[bool, typer.Option(help="publish even if the gate refuses")] = False,
    local: Local = False,
    url: Url = GATEWAY,
    api_key: ApiKey = None,
    follow: Follow = True,
    as_json: AsJson = False,
) -> None:
    """Export a trained run, gate it against the served version, and publish it."""
    body = _params({"type": "export", "run": run, "model": model, "threshold": threshold, "force": force})
    _run(body, local=local, url=url, api_key=api_key, follow=follow, as_json=as_json)


def active_learning(
    model: Annotated[str, typer.Option(help="the detector to improve (published); new versions go there")],
    dataset: Annotated[str, typer.Option(help="the boxed detection dataset")],
    pool: Annotated[
        str | None, typer.Option(help="a folder under the data folder, a sub-folder per class (root images: no label)")
    ] = None,
    pool_dataset: Annotated[str | None, typer.Option(help="or a pool dataset")] = None,
    version: Annotated[int | None, typer.Option(help="the version to start from (default: the latest)")] = None,
    dataset_version: Annotated[int | None, typer.Option()] = None,
    rounds: Annotated[int, typer.Option()] = 3,
    min_score: Annotated[float, typer.Option(help="accept a labelled image's boxes from this score")] = 0.9,
    unlabelled_min_score: Annotated[float, typer.Option(help="the same for images without a label")] = 0.97,
    candidate_score: Annotated[float, typer.Option(help="boxes from this score are candidates")] = 0.2,
    min_gain: Annotated[float, typer.Option(help="stop when a round raises mAP@0.5 less")] = 0.005,
    predict_via: Annotated[str, typer.Option(help="local or gateway")] = "local",
    epochs: Annotated[int, typer.Option(help="per round")] = 3,
    steps_per_epoch: Annotated[int | None, typer.Option()] = None,
    batch_size: Annotated[int, typer.Option()] = 16,
    train_size: Annotated[int | None, typer.Option(help="training crops")] = None,
    learning_rate: Annotated[float, typer.Option()] = 5e-4,
    threshold: Annotated[float, typer.Option(help="the export gate's allowed drop per round")] = 0.02,
    force: Annotated[bool, typer.Option(help="publish each round even if the gate refuses")] = False,
    seed: Annotated[int, typer.Option()] = 0,
    local: Local = False,
    url: Url = GATEWAY,
    api_key: ApiKey = None,
    follow: Follow = True,
    as_json: AsJson = False,
) -> None:
    """Grow a boxed dataset from images labelled as a whole, round by round (predict, accept or review, retrain)."""
    body = _params(
        {
            "type": "active-learning",
            "model": model,
            "version": version,
            "dataset": dataset,
            "dataset_version": dataset_version,
            "pool": pool,
            "pool_dataset": pool_dataset,
            "rounds": rounds,
            "min_score": min_score,
            "unlabelled_min_score": unlabelled_min_score,
            "candidate_score": candidate_score,
            "min_gain": min_gain,
            "predict_via": predict_via,
            "epochs": epochs,
            "steps_per_epoch": steps_per_epoch,
            "batch_size": batch_size,
            "train_size": train_size,
            "learning_rate": learning_rate,
            "threshold": threshold,
            "force": force or None,
            "seed": seed,
        }
    )
    _run(body, local=local, url=url, api_key=api_key, follow=follow, as_json=as_json)


def list_command(
    job_type: Annotated[str | None, typer.Option("--type", help="only this type")] = None,
    state: Annotated[str | None, typer.Option(help="only this state")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
    url: Url = GATEWAY,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """List jobs, newest first."""
    from services.client.jobs import JobsClient

    try:
        with JobsClient(url, api_key=api_key) as client:
            jobs = client.list(job_type=job_type, state=state, limit=limit)
    except SpotterError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps(jobs, indent=2))
        return
    table = Table(title="Jobs")
    for column in ("ID", "TYPE", "STATE", "STAGE", "PROGRESS", "CREATED"):
        table.add_column(column)
    for job in jobs:
        percent = f"{float(job['progress'].get('percent') or 0):.0f}%"
        table.add_row(job["id"], str(job["type"]), job["state"], str(job["stage"]), percent, str(job["created_at"]))
    out.print(table)


def show_command(
    job_id: Annotated[str, typer.Argument(help="the job")],
    url: Url = GATEWAY,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Show a job: state, progress, metrics, result or error, artifacts."""
    from services.client.jobs import JobsClient

    try:
        with JobsClient(url, api_key=api_key) as client:
            record = client.get(job_id)
    except SpotterError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps(record, indent=2))
    else:
        _print_record(record)


def cancel_command(
    job_id: Annotated[str, typer.Argument(help="the job")],
    url: Url = GATEWAY,
    api_key: ApiKey = None,
) -> None:
    """Cancel a job (a running one is stopped), and the jobs chained after it."""
    from services.client.jobs import JobsClient

    try:
        with JobsClient(url, api_key=api_key) as client:
            record = client.cancel(job_id)
    except SpotterError as exc:
        raise _fail(exc) from None
    out.print(f"job {job_id} was {record['canceled_from']}: now {record['state']}", highlight=False)
