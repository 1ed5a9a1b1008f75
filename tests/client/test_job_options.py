"""The job commands' options are generated from the parameters models: every field is a flag with its type, only the
flags given are sent (the model's defaults apply), and a field added to a model is a flag with no other edit."""

from __future__ import annotations

from typing import Any, Literal

import pytest
import typer
from pydantic import Field
from typer.main import get_command
from typer.testing import CliRunner

from services.client.job_options import job_command, job_options
from services.client.jobs_cli import COMMON, JOB_COMMANDS, build_command, register
from services.jobs.params import TrainParams

runner = CliRunner()


def _paths(model: type[Any]) -> set[tuple[str, ...]]:
    """Every field of a model, a nested model's fields by their path."""
    paths: set[tuple[str, ...]] = set()
    for name, field in model.model_fields.items():
        nested = [a for a in getattr(field.annotation, "__args__", (field.annotation,)) if hasattr(a, "model_fields")]
        paths |= {(name, sub) for sub in nested[0].model_fields} if nested else {(name,)}
    return paths - {("type",)}


@pytest.mark.parametrize("name", sorted(JOB_COMMANDS))
def test_every_field_of_the_model_is_an_option_of_its_command(name: str) -> None:
    spec = JOB_COMMANDS[name]
    app = typer.Typer()
    register(app)
    command = get_command(app).commands[name]  # type: ignore[attr-defined]
    flags = {flag for param in command.params for flag in (*param.opts, *param.secondary_opts)}
    options = job_options(spec.model, spec.aliases)
    assert {o.path for o in options} == _paths(spec.model)
    for option in options:
        assert set(option.flags[0].split("/")) <= flags, option
    assert {"--local", "--url", "--api-key", "--follow", "--no-follow", "--json"} <= flags


class Extended(TrainParams):
    colour_jitter: float = Field(0.1, ge=0.0, description="how much colours are jittered")
    fast: bool = Field(False, description="take shortcuts")
    mode: Literal["a", "b"] = "a"
    tags: list[str] = Field(default_factory=list, description="labels of the run")


def _capture(model: type[Any]) -> tuple[typer.Typer, list[dict[str, Any]]]:
    sent: list[dict[str, Any]] = []
    app = typer.Typer()
    command = job_command(job_options(model), COMMON, lambda body, common: sent.append(body), name="x", doc="x")
    app.command("x")(command)
    app.command("y")(command)  # two commands: typer keeps the name
    return app, sent


def test_a_field_added_to_a_model_becomes_a_flag_with_its_type_default_and_help() -> None:
    app, sent = _capture(Extended)
    shown = runner.invoke(app, ["x", "--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0
    for text in ("--colour-jitter", "how much colours are jittered", "0.1", "--fast", "--no-fast", "--tags", "a|b"):
        assert text in shown.output, text
    args = ["x", "--dataset", "d", "--colour-jitter", "0.5", "--fast", "--mode", "b", "--tags", "p", "--tags", "q"]
    assert runner.invoke(app, args).exit_code == 0
    assert sent[-1] == {"dataset": "d", "colour_jitter": 0.5, "fast": True, "mode": "b", "tags": ["p", "q"]}
    refused = runner.invoke(app, ["x", "--dataset", "d", "--mode", "c"])
    assert refused.exit_code == 2 and not sent[1:]


def test_a_type_with_no_option_form_is_refused_when_the_command_is_built() -> None:
    class Odd(TrainParams):
        weights_by_layer: dict[str, float] = Field(default_factory=dict)

    with pytest.raises(TypeError, match="weights_by_layer"):
        job_options(Odd)


def test_only_the_flags_given_are_sent_and_older_flags_still_work() -> None:
    sent: list[dict[str, Any]] = []
    app = typer.Typer()
    for name, spec in JOB_COMMANDS.items():
        app.command(name)(build_command(name, spec, None, submit=lambda body, **common: sent.append(body)))
    args = ["train", "--dataset", "shapes", "--epochs", "2", "--no-restart", "--evaluate"]
    assert runner.invoke(app, [*args, "--export-model", "m", "--threshold", "0.1", "--force"]).exit_code == 0
    expected = {"type": "train", "dataset": "shapes", "epochs": 2, "restart": False, "evaluate": True}
    assert sent[-1] == {**expected, "export": {"model": "m", "threshold": 0.1, "force": True}}
    assert runner.invoke(app, ["export", "--run", "r", "--model", "m"]).exit_code == 0
    assert sent[-1] == {"type": "export", "run": "r", "model": "m"}  # threshold, split...: the model's defaults
    assert runner.invoke(app, ["evaluate", "--model", "m", "--dataset", "d", "--split", "test"]).exit_code == 0
    assert sent[-1] == {"type": "evaluate", "model": "m", "dataset": "d", "split": "test"}
    al = ["active-learning", "--model", "m", "--dataset", "d", "--pool", "pool", "--predict-via", "gateway"]
    assert runner.invoke(app, al).exit_code == 0
    assert sent[-1] == {
        "type": "active-learning",
        "model": "m",
        "dataset": "d",
        "pool": "pool",
        "predict_via": "gateway",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--dataset", "shapes", "--input-size", "100"], "input_size"),
        (["train", "--dataset", "shapes", "--export-threshold", "0.1"], "export.model"),
        (["evaluate", "--run", "r", "--model", "m"], "exactly one of run"),
        (["active-learning", "--model", "m", "--dataset", "d"], "exactly one of pool"),
    ],
)
def test_parameters_the_model_refuses_exit_2_with_what_is_wrong_and_nothing_is_sent(
    args: list[str], message: str
) -> None:
    sent: list[dict[str, Any]] = []
    app = typer.Typer()
    for name, spec in JOB_COMMANDS.items():
        app.command(name)(build_command(name, spec, None, submit=lambda body, **common: sent.append(body)))
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and not sent
    assert "invalid parameters" in result.stderr and message in result.stderr, result.stderr


def test_local_without_a_runner_is_refused() -> None:
    app = typer.Typer()
    register(app)  # no run_local
    result = runner.invoke(app, ["export", "--run", "r", "--model", "m", "--local", "--json"])
    assert result.exit_code == 2 and "--local" in result.stderr
    assert result.stdout == ""  # no record printed


def test_a_field_that_clashes_with_the_commands_own_options_is_refused() -> None:
    class Clashing(TrainParams):
        url: str = "x"

    with pytest.raises(ValueError, match="url"):
        job_command(job_options(Clashing), COMMON, lambda body, common: None, name="x", doc="x")
