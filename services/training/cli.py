"""The training commands of ``spotter``. TensorFlow is imported inside the commands, never at import time."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def demo_model(
    output: Annotated[Path, typer.Option(help="The model folder: the demo is published as <output>/1/.")] = Path(
        "models/demo"
    ),
    quick: Annotated[bool, typer.Option(help="A few minutes of training instead of ~40 (a weak first model).")] = False,
    epochs: Annotated[int | None, typer.Option(min=1, help="Override the recipe's epochs.")] = None,
    steps_per_epoch: Annotated[int | None, typer.Option(min=1, help="Override the recipe's steps per epoch.")] = None,
) -> None:
    """Train the demo detector on generated scenes and publish it as <output>/1/ with examples and a README."""
    from dataclasses import replace

    from rich.console import Console

    from services.logs import configure_logging

    configure_logging("INFO", json=False)
    from services.training.demo import QUICK, DemoRecipe, make_demo_model

    recipe = QUICK if quick else DemoRecipe()
    overrides = {k: v for k, v in {"epochs": epochs, "steps_per_epoch": steps_per_epoch}.items() if v is not None}
    if overrides:
        recipe = replace(recipe, train=replace(recipe.train, **overrides))
    result = make_demo_model(output, recipe)
    console = Console()
    console.print(f"[bold]published[/bold] {result.version_dir}")
    console.print(f"mAP@0.5 {result.ap.mean:.3f}: " + ", ".join(f"{k} {v:.3f}" for k, v in result.ap.per_class.items()))
    console.print(f"precision {result.precision:.3f}, recall {result.recall:.3f} at min_score 0.5")
    console.print(f"trained in {result.train_seconds / 60:.1f} min ({result.train_images_per_second:.1f} images/s)")


def register(app: typer.Typer) -> None:
    """Add the training commands to ``app``."""
    app.command("demo-model")(demo_model)
