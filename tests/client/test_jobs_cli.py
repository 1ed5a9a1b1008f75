"""``spotter train / evaluate / export / active-learning / jobs`` against a real gateway, Redis, RQ worker and model
server: a tiny detector (64 px, 1 epoch of 2 steps) is trained with its chain, evaluated, exported and improved
through the CLI, listed, shown and cancelled; and a ``--local`` evaluate runs the worker's own job function in the
CLI's process (a subprocess here: it imports TensorFlow).

The submitting commands run in this process (they are TensorFlow-free); the worker and model server are the
helpers of the jobs tests.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from services.cli import app
from services.processes import ServerProcess, spotter_command
from tests.conftest import REPO
from tests.datasets.fixtures import scenes, write_voc_dataset
from tests.jobs.support import (
    KEY,
    running_job_stack,
    upload,
    wait_job,
    worker_env,
    zip_folder,
)

pytestmark = pytest.mark.integration

runner = CliRunner()
TINY = ["--input-size", "64", "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "4", "--weights", "none"]


@dataclass
class Stack:
    base: Path
    url: str
    http: httpx.Client
    workers: list[ServerProcess]

    def spotter(self, *args: str) -> Any:
        """A job command in this process against the stack's gateway; its result (exit code, output)."""
        return runner.invoke(app, [*args, "--url", self.url, "--api-key", "k1"], env={"COLUMNS": "200"})

    def records(self, *args: str) -> Any:
        """A command's ``--json`` output (the records, or the record of ``jobs show``)."""
        result = self.spotter(*args, "--json")
        assert result.exit_code == 0, (result.output, result.stderr, self.workers[0].log()[-3000:])
        return json.loads(result.stdout)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("cli")
    with running_job_stack(base, ("cli-worker",)) as running:
        write_voc_dataset(base / "voc", scenes(count=12, size=64))
        imported = upload(running.http, "shapes", "voc", zip_folder(base / "voc"), split="0.75")
        assert wait_job(running.http, imported, timeout=180, workers=running.workers)["state"] == "finished"
        yield Stack(base, running.gateway.url, running.http, running.workers)


@pytest.fixture(scope="module")
def chain(stack: Stack) -> list[dict[str, Any]]:
    """``spotter train`` with ``--evaluate`` and ``--export-model``: run ``det`` trained, evaluated, published."""
    args = ("train", "--dataset", "shapes", "--run", "det", *TINY, "--evaluate", "--export-model", "shapes")
    records: list[dict[str, Any]] = stack.records(*args)
    return records


def test_train_with_evaluate_and_export_runs_the_chain_with_the_models_defaults(
    stack: Stack, chain: list[dict[str, Any]]
) -> None:
    assert [(r["type"], r["state"]) for r in chain] == [
        ("train", "finished"),
        ("evaluate", "finished"),
        ("export", "finished"),
    ]
    trained, evaluated, exported = (r["result"] for r in chain)
    assert trained["run"] == "det" and trained["epochs_done"] == 1 and trained["kind"] == "detector"
    assert evaluated["kind"] == "detector" and "map50" in evaluated and "accuracy" not in evaluated
    assert exported["model"] == "shapes" and exported["version"] == 1
    # The model's defaults applied where no flag was given (typer's defaults used to override them).
    params = stack.http.get(f"/v1/jobs/{chain[0]['id']}", headers=KEY).json()["params"]
    assert params["patience"] == 3 and params["alpha"] == 0.35 and params["views"] == "auto"


def test_evaluate(stack: Stack, chain: list[dict[str, Any]]) -> None:
    (evaluation,) = stack.records("evaluate", "--run", "det", "--split", "validation", "--min-score", "0.3")
    assert evaluation["state"] == "finished" and evaluation["result"]["min_score"] == 0.3
    assert evaluation["result"]["source"] == {"run": "det"}


def test_export(stack: Stack, chain: list[dict[str, Any]]) -> None:
    (published,) = stack.records("export", "--run", "det", "--model", "shapes", "--force")
    assert published["state"] == "finished" and published["result"]["version"] == 2
    params = stack.http.get(f"/v1/jobs/{published['id']}", headers=KEY).json()["params"]
    assert params["force"] is True and params["threshold"] == 0.02  # the flag given, the model's default


def test_jobs_list_show_and_cancel(stack: Stack, chain: list[dict[str, Any]]) -> None:
    listed = stack.records("jobs", "list", "--type", "export")
    assert chain[2]["id"] in {r["id"] for r in listed} and all(r["type"] == "export" for r in listed)
    evaluation = chain[1]
    shown = stack.records("jobs", "show", evaluation["id"])
    assert shown["state"] == "finished" and shown["result"]["map50"] == evaluation["result"]["map50"]
    table = stack.spotter("jobs", "show", evaluation["id"])
    assert table.exit_code == 0 and f"evaluate {evaluation['id']}: finished" in table.stdout
    ended = stack.spotter("jobs", "cancel", evaluation["id"])
    assert ended.exit_code == 1 and "already ended" in ended.stderr
    missing = stack.spotter("jobs", "show", "no-such-job")
    assert missing.exit_code == 1 and "no-such-job" in missing.stderr


def test_a_job_submitted_without_following_can_be_cancelled(stack: Stack) -> None:
    long = ["--input-size", "64", "--epochs", "50", "--steps-per-epoch", "100", "--weights", "none"]
    (queued,) = stack.records("train", "--dataset", "shapes", "--run", "to-cancel", *long, "--no-follow")
    assert queued["state"] in ("queued", "started")
    cancelled = stack.spotter("jobs", "cancel", queued["id"])
    assert cancelled.exit_code == 0 and f"job {queued['id']} was" in cancelled.stdout
    record = wait_job(stack.http, queued["id"], timeout=120, workers=stack.workers)
    assert record["state"] in ("canceled", "stopped"), record


def test_active_learning_submitted_through_the_gateway(stack: Stack, chain: list[dict[str, Any]]) -> None:
    pool = stack.base / "data" / "pool"
    pool.mkdir(parents=True, exist_ok=True)
    for i, scene in enumerate(scenes(seed=99, count=4, size=64)):
        scene.image.save(pool / f"p{i}.jpg", quality=95)  # in the pool's root: no label
    (record,) = stack.records(
        "active-learning", "--model", "shapes", "--dataset", "shapes", "--pool", "pool", "--rounds", "1", *TINY[2:6]
    )
    assert record["state"] == "finished", record
    result = record["result"]
    assert result["model"] == "shapes" and result["stopped"], result


def test_a_failing_job_exits_1_with_the_error(stack: Stack) -> None:
    refused = stack.spotter("evaluate", "--run", "no-such-run")
    assert refused.exit_code == 1 and "no run named 'no-such-run'" in refused.stderr


def test_local_runs_the_workers_job_function_in_the_cli_process(stack: Stack, chain: list[dict[str, Any]]) -> None:
    env = {**os.environ, **worker_env(stack.base / "data", stack.base / "models")}
    done = subprocess.run(
        [*spotter_command("evaluate", "--run", "det", "--local", "--json")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (record,) = json.loads(done.stdout)
    assert record["type"] == "evaluate" and record["state"] == "finished"
    assert record["result"]["kind"] == "detector" and "map50" in record["result"]
    artifacts = stack.base / "data" / "jobs" / record["id"]
    assert json.loads((artifacts / "result.json").read_text())["status"] == "finished"
    assert (artifacts / "evaluation.json").is_file() and (artifacts / "pr_curve.png").is_file()
