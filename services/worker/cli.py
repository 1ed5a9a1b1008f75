"""``spotter worker``: the RQ worker for imports (``spotter-data``) and training (``spotter-train``)."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

logger = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    """Add ``spotter worker`` to the ``spotter`` command."""
    app.command("worker")(worker)


def worker(
    queue: Annotated[
        list[str] | None,
        typer.Option("--queue", "-q", help="A queue to listen to (repeat for several); default: all of Spotter's."),
    ] = None,
    burst: Annotated[
        bool, typer.Option(help="Work until the queues are empty, then exit (tests, batch runs).")
    ] = False,
    name: Annotated[str | None, typer.Option(help="The worker's name in Redis (default: a random one).")] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus metrics on this port (0: none; default from settings).")
    ] = None,
) -> None:
    """Run an RQ worker: dataset imports, and training, evaluation and export jobs."""
    # Everything heavy is imported here, not when the `spotter` command is built.
    import redis
    from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

    from services.jobs.queues import ALL_QUEUES, redis_connection
    from services.logs import configure_logging
    from services.worker.config import WorkerSettings
    from services.worker.context import set_worker_settings
    from services.worker.metrics import serve_metrics
    from services.worker.worker import build_worker, sweep_leftovers

    settings = WorkerSettings()
    configure_logging(settings.log_level, json=settings.log_json)
    set_worker_settings(settings)
    names = list(queue or settings.worker_queues)
    unknown = [n for n in names if n not in ALL_QUEUES]
    if unknown:
        raise typer.BadParameter(f"unknown queue(s) {', '.join(unknown)}; Spotter's are {', '.join(ALL_QUEUES)}")

    connection = redis_connection(settings.redis_url)
    try:
        Retrying(retry=retry_if_exception_type(redis.ConnectionError), stop=stop_after_delay(15), wait=wait_fixed(0.5))(
            connection.ping
        )
    except RetryError as exc:
        typer.echo(f"Redis at {settings.redis_url} can't be reached: {exc.last_attempt.exception()}", err=True)
        raise typer.Exit(1) from exc

    sweep_leftovers(settings.data_dir, connection, settings.stale_staging_hours)
    port = settings.worker_metrics_port if metrics_port is None else metrics_port
    if port:
        try:
            serve_metrics(port, connection, names)
        except OSError as exc:  # a worker without metrics still works; a worker that refuses to start does not
            logger.error("worker metrics not served: port %d: %s", port, exc)
    logger.info("worker listening on %s (data in %s)", ", ".join(names), settings.data_dir)
    build_worker(names, connection, name).work(burst=burst, with_scheduler=True, logging_level=settings.log_level)
