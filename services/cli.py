"""The ``spotter`` command. Each part of Spotter registers its own commands; none of them imports TensorFlow until
the command that needs it runs."""

from __future__ import annotations

import typer

from services import run
from services.client import cli as client_cli
from services.client import jobs_cli
from services.gateway import cli as gateway_cli
from services.modelserver import cli as modelserver_cli
from services.training import cli as training_cli
from services.training.datasets import cli as dataset_cli
from services.worker import cli as worker_cli
from services.worker.local import run_chain

app = typer.Typer(
    name="spotter",
    help="Serve, train and operate image detectors and classifiers.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


gateway_cli.register(app)
client_cli.register(app)
run.register(app)
modelserver_cli.register(app)
dataset_cli.register(app)
worker_cli.register(app)
training_cli.register(app)
jobs_cli.register(app, run_local=run_chain)


def main() -> None:
    """Entry point of the ``spotter`` console script."""
    app()
