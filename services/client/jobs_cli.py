"""``spotter train|evaluate|export|active-learning|sweep`` and ``spotter jobs list|show|cancel``.

The options of the job commands are the fields of their parameters models (:mod:`services.jobs.params`, made
into options by :mod:`services.client.job_options`): a field added to a model is a flag here, and only the flags
given are sent, so the model's defaults apply. Jobs are submitted to a gateway (``--url``, API key from
``--api-key`` or ``SPOTTER_API_KEY``) and followed with a progress bar (polling ``GET /v1/jobs/{id}``), chain
included; or, with ``--local``, run in this process on this machine's data folder and model root (the worker's
settings) by the worker's own runner (:mod:`services.worker.local`, given to :func:`register`), with the same checks,
function, artifacts and progress bar. Nothing here imports TensorFlow, nor the worker or training.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import typer
from pydantic import BaseModel
from rich.progress import TaskID
from rich.table import Table

from services.client import job_view
from services.client.job_options import job_command, job_options
from services.errors import SpotterError
from services.jobs.params import ActiveLearningParams, EvaluateParams, ExportParams, SweepParams, TrainParams

GATEWAY = "http://127.0.0.1:8080"
ENDED_WELL = ("finished", "queued", "deferred", "started", "scheduled")

LocalRunner = Callable[[dict[str, Any], Callable[[int, dict[str, Any]], None]], list[dict[str, Any]]]
"""``(params, on_progress(index in the chain, record)) -> the finished jobs' records``
(:func:`services.worker.local.run_chain`)."""


def _option(name: str, default: Any, annotation: Any, *decls: str, **kwargs: Any) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=typer.Option(default, *decls, **kwargs), annotation=annotation
    )


COMMON = (
    _option("local", False, bool, "--local", help="run in this process instead of submitting to the gateway"),
    _option("url", GATEWAY, str, envvar="SPOTTER_GATEWAY_URL", help="the gateway"),
    _option("api_key", None, str | None, envvar="SPOTTER_API_KEY", help="sent as X-API-Key"),
    _option("follow", True, bool, help="follow the job (and its chain) with a progress bar until it ends"),
    _option("as_json", False, bool, "--json", help="print the final records as JSON"),
)
"""The options every job command has besides its parameters."""


class JobCommand:
    """A job command: its parameters model, its help, and older flags kept for some fields (by dotted path)."""

    def __init__(self, model: type[BaseModel], doc: str, aliases: Mapping[str, Sequence[str]] | None = None) -> None:
        self.model, self.doc, self.aliases = model, doc, dict(aliases or {})


JOB_COMMANDS: dict[str, JobCommand] = {
    "train": JobCommand(
        TrainParams,
        "Train a detector or classifier on a dataset (then evaluate and export it, if asked).",
        {"export.threshold": ["--threshold"], "export.force": ["--force"]},
    ),
    "evaluate": JobCommand(EvaluateParams, "Evaluate a run or a published model version on a dataset split."),
    "export": JobCommand(ExportParams, "Export a trained run, gate it against the served version, and publish it."),
    "active-learning": JobCommand(
        ActiveLearningParams,
        "Grow a boxed dataset from images labelled as a whole, round by round (predict, accept or review, retrain).",
    ),
    "sweep": JobCommand(
        SweepParams,
        "Train every alpha x input size on a dataset (rows in parallel over the workers), then table and plot each "
        "one's accuracy against its export's images/s, with the Pareto front. Repeat --alpha and --input-size.",
        {"alphas": ["--alpha"], "input_sizes": ["--input-size"]},
    ),
}


def build_command(
    name: str, spec: JobCommand, run_local: LocalRunner | None, submit: Callable[..., None] | None = None
) -> Callable[..., None]:
    """The typer command of a job type: its model's options (:func:`~services.client.job_options.job_options`)
    and :data:`COMMON`; it checks the parameters given and submits them (``submit``, default :func:`run`)."""
    send = submit or run
    job_type = str(spec.model.model_fields["type"].default)

    def start(body: dict[str, Any], common: dict[str, Any]) -> None:
        send(check({"type": job_type, **body}), run_local=run_local, **common)

    return job_command(job_options(spec.model, spec.aliases), COMMON, start, name=name, doc=spec.doc)


def register(app: typer.Typer, run_local: LocalRunner | None = None) -> None:
    """Add ``spotter train``, ``evaluate``, ``export``, ``active-learning``, ``sweep`` and ``spotter jobs ...`` to the
    ``spotter`` command; ``run_local`` runs ``--local`` jobs (without it ``--local`` is refused)."""
    for name, spec in JOB_COMMANDS.items():
        app.command(name)(build_command(name, spec, run_local))
    jobs = typer.Typer(help="List, show and cancel jobs on a gateway.", no_args_is_help=True)
    jobs.command("list")(list_command)
    jobs.command("show")(show_command)
    jobs.command("cancel")(cancel_command)
    app.add_typer(jobs, name="jobs")


def check(body: dict[str, Any]) -> dict[str, Any]:
    """The job's parameters, checked here first (the gateway checks them again); exit 2 with what is wrong."""
    from pydantic import TypeAdapter, ValidationError

    from services.jobs.params import JobParams

    try:
        TypeAdapter(JobParams).validate_python(body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors())
        job_view.err.print(f"[red]invalid parameters[/red]: {problems}", highlight=False)
        raise typer.Exit(2) from None
    return body


def run(
    body: dict[str, Any],
    *,
    run_local: LocalRunner | None,
    local: bool,
    url: str,
    api_key: str | None,
    follow: bool,
    as_json: bool,
) -> None:
    """Run a checked job here (``local``) or submit it to ``url``; print the records; exit 1 if one did not end well."""
    records = _run_local(body, run_local) if local else _run_remote(body, url=url, api_key=api_key, follow=follow)
    if as_json:
        typer.echo(json.dumps(records, indent=2, default=str))
    else:
        for record in records:
            job_view.print_record(record)
    if any(r.get("state") not in ENDED_WELL for r in records):
        raise typer.Exit(1)


def _run_remote(body: dict[str, Any], *, url: str, api_key: str | None, follow: bool) -> list[dict[str, Any]]:
    from services.client.jobs import JobsClient

    try:
        with JobsClient(url, api_key=api_key) as client:
            submitted = client.submit(body)
            names = ", ".join(f"{r['type']} {r['id']}" for r in submitted["jobs"])
            job_view.err.print(f"submitted {names}", highlight=False)
            if not follow:
                return list(submitted["jobs"])
            records = []
            with job_view.bar() as progress:
                for job_id in (r["id"] for r in submitted["jobs"]):
                    task = progress.add_task(job_id[:8], total=100.0, message="")
                    record: dict[str, Any] = {}
                    for record in client.follow(job_id):
                        job_view.show(progress, task, record)
                    records.append(record)
                    if record["state"] != "finished":
                        break  # the rest of the chain is canceled
            return records
    except SpotterError as exc:
        raise job_view.fail(exc) from None


def _run_local(body: dict[str, Any], run_local: LocalRunner | None) -> list[dict[str, Any]]:
    if run_local is None:
        job_view.err.print("[red]--local[/red] is not available in this program", highlight=False)
        raise typer.Exit(2)
    tasks: dict[int, TaskID] = {}
    try:
        with job_view.bar() as progress:

            def on_progress(index: int, record: dict[str, Any]) -> None:
                if index not in tasks:
                    tasks[index] = progress.add_task(str(record.get("type")), total=100.0, message="")
                job_view.show(progress, tasks[index], record)

            return run_local(body, on_progress)
    except SpotterError as exc:
        raise job_view.fail(exc) from None


Url = typer.Option(GATEWAY, envvar="SPOTTER_GATEWAY_URL", help="the gateway")
ApiKey = typer.Option(None, envvar="SPOTTER_API_KEY", help="sent as X-API-Key")
AsJson = typer.Option(False, "--json", help="print the records as JSON")


def list_command(
    job_type: str | None = typer.Option(None, "--type", help="only this type"),
    state: str | None = typer.Option(None, help="only this state"),
    limit: int = typer.Option(20, min=1, max=500),
    url: str = Url,
    api_key: str | None = ApiKey,
    as_json: bool = AsJson,
) -> None:
    """List jobs, newest first."""
    from services.client.jobs import JobsClient

    try:
        with JobsClient(url, api_key=api_key) as client:
            jobs = client.list(job_type=job_type, state=state, limit=limit)
    except SpotterError as exc:
        raise job_view.fail(exc) from None
    if as_json:
        typer.echo(json.dumps(jobs, indent=2))
        return
    table = Table(title="Jobs")
    for column in ("ID", "TYPE", "STATE", "STAGE", "PROGRESS", "CREATED"):
        table.add_column(column)
    for job in jobs:
        percent = f"{float(job['progress'].get('percent') or 0):.0f}%"
        table.add_row(job["id"], str(job["type"]), job["state"], str(job["stage"]), percent, str(job["created_at"]))
    job_view.out.print(table)


def show_command(
    job_id: str = typer.Argument(help="the job"),
    url: str = Url,
    api_key: str | None = ApiKey,
    as_json: bool = AsJson,
) -> None:
    """Show a job: state, progress, metrics, result or error, artifacts."""
    from services.client.jobs import JobsClient

    try:
        with JobsClient(url, api_key=api_key) as client:
            record = client.get(job_id)
    except SpotterError as exc:
        raise job_view.fail(exc) from None
    if as_json:
        typer.echo(json.dumps(record, indent=2))
    else:
        job_view.print_record(record)


def cancel_command(
    job_id: str = typer.Argument(help="the job"),
    url: str = Url,
    api_key: str | None = ApiKey,
) -> None:
    """Cancel a job (a running one is stopped), and the jobs chained after it."""
    from services.client.jobs import JobsClient

    try:
        with JobsClient(url, api_key=api_key) as client:
            record = client.cancel(job_id)
    except SpotterError as exc:
        raise job_view.fail(exc) from None
    job_view.out.print(f"job {job_id} was {record['canceled_from']}: now {record['state']}", highlight=False)
