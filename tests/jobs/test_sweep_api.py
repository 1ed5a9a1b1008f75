"""A sweep through ``POST /v1/jobs`` with the real gateway app and Redis, without a worker: what is refused at submit
(422 naming the parameter, nothing queued), and what is queued: one train and evaluate chain per row, side by side,
and a report that waits for every row and is canceled when a row is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis
import typer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from services.client import job_view
from services.client.jobs_cli import JOB_COMMANDS, build_command
from services.errors import InvalidParameter
from services.gateway.config import GatewaySettings
from services.jobs.queues import TRAIN_QUEUE, fetch_job, get_queue
from services.store.runs import RunInfo, RunStore
from services.worker.config import WorkerSettings
from services.worker.context import set_worker_settings
from services.worker.local import run_chain
from tests.jobs.conftest import KEY, queued

SWEEP: dict[str, Any] = {"type": "sweep", "dataset": "shapes", "alphas": [0.35, 0.5], "input_sizes": [128], "epochs": 1}


@pytest.mark.parametrize(
    ("body", "parameter", "message"),
    [
        ({**SWEEP, "alphas": []}, "alphas", "at least 1 item"),
        ({**SWEEP, "input_sizes": []}, "input_sizes", "at least 1 item"),
        ({**SWEEP, "alphas": [0.35, 2.0]}, "alphas.1", "less than or equal to 1.4"),
        ({**SWEEP, "input_sizes": [100]}, "input_sizes.0", "multiple of 32"),
        ({**SWEEP, "alphas": [0.5, 0.5]}, "alphas", "repeated"),
        (
            {**SWEEP, "alphas": [0.35, 0.5, 0.75, 1.0, 1.3], "input_sizes": [96, 128, 160]},
            "",
            "alphas x input_sizes is 5 x 3 = 15 combinations; a sweep trains at most 12",
        ),
        ({**SWEEP, "train_size": 256}, "", "train_size 256 is larger than input_sizes 128"),
        ({**SWEEP, "batches": [0, 4]}, "batches", "batch sizes must be 1..256"),
        ({**SWEEP, "epochs": 0}, "epochs", "greater than or equal to 1"),
        ({**SWEEP, "run_prefix": "p" * 60}, "run_prefix", "at most"),
        ({**SWEEP, "export": {"model": "m"}}, "export", "Extra inputs"),
    ],
)
def test_bad_sweeps_are_422_naming_the_parameter_and_queue_nothing(
    client: TestClient, settings: GatewaySettings, body: dict[str, Any], parameter: str, message: str
) -> None:
    answer = client.post("/v1/jobs", json=body, headers=KEY)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    problems = error["details"]
    named = ".".join(("sweep", parameter)).rstrip(".")  # the union's tag first, as pydantic places it
    assert any(p["parameter"] == named and message in p["message"] for p in problems), error
    assert queued(settings.redis_url) == 0


@pytest.mark.parametrize(
    ("body", "parameter", "message"),
    [
        ({**SWEEP, "dataset": "nothing"}, "dataset", "dataset 'nothing' not found"),
        (
            {**SWEEP, "input_sizes": [32, 128]},
            "input_sizes",
            "row alpha 0.35, input size 32: input_size 32 is too small",
        ),
        ({**SWEEP, "dataset": "novalid"}, "split", "has no validation images"),
        ({**SWEEP, "weights": "missing.h5"}, "weights", "weights file not found"),
    ],
)
def test_rows_that_fail_their_train_jobs_check_are_422_and_queue_nothing(
    client: TestClient, settings: GatewaySettings, body: dict[str, Any], parameter: str, message: str
) -> None:
    answer = client.post("/v1/jobs", json=body, headers=KEY)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert message in error["message"] and error["details"]["parameter"] == parameter, error
    assert queued(settings.redis_url) == 0


def test_a_sweep_refuses_to_train_into_an_existing_run(client: TestClient, settings: GatewaySettings) -> None:
    RunStore(settings.data_dir).write_info(RunInfo("mine-a0.5-s128", {}, {}, {}))
    answer = client.post("/v1/jobs", json={**SWEEP, "run_prefix": "mine"}, headers=KEY)
    assert answer.status_code == 422 and answer.json()["error"]["details"]["parameter"] == "run_prefix"
    assert "mine-a0.5-s128" in answer.json()["error"]["message"]
    assert queued(settings.redis_url) == 0


def test_a_sweep_is_a_chain_per_row_side_by_side_and_a_report_waiting_for_all(
    client: TestClient, settings: GatewaySettings
) -> None:
    answer = client.post("/v1/jobs", json={**SWEEP, "input_sizes": [96, 128]}, headers=KEY)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    jobs = body["jobs"]
    assert [j["type"] for j in jobs] == ["train", "evaluate"] * 4 + ["sweep"]
    report = jobs[-1]
    assert body["job_id"] == report["id"] and answer.headers["location"] == f"/v1/jobs/{report['id']}"
    prefix = report["params"]["run_prefix"]
    assert prefix.startswith("shapes-sweep-") and report["params"]["dataset_version"] == 1
    runs = [j["params"]["run"] for j in jobs[:-1:2]]
    assert runs == [f"{prefix}-a{a}-s{s}" for a in ("0.35", "0.5") for s in (96, 128)]
    trains, evaluations = jobs[:-1:2], jobs[1:-1:2]
    for train, evaluate in zip(trains, evaluations, strict=True):
        assert (train["state"], evaluate["state"]) == ("queued", "deferred")  # every row can start at once
        assert train["chain"] == evaluate["chain"] == [train["id"], evaluate["id"], report["id"]]
        assert (train["depends_on"], evaluate["depends_on"]) == (None, train["id"])
        assert train["params"]["epochs"] == 1 and train["params"]["evaluate"] is False
        assert evaluate["params"]["run"] == train["params"]["run"] and evaluate["params"]["split"] == "validation"
    assert report["state"] == "deferred" and report["chain"] == [j["id"] for j in jobs]
    assert report["depends_on"] == [e["id"] for e in evaluations]
    with redis.Redis.from_url(settings.redis_url) as connection:
        queue = get_queue(TRAIN_QUEUE, connection)
        assert sorted(queue.get_job_ids()) == sorted(t["id"] for t in trains)
        job = fetch_job(report["id"], connection)
        assert sorted(job.dependency_ids) == sorted(e["id"] for e in evaluations)
        rows = job.meta["sweep"]["rows"]
    assert [(r["alpha"], r["input_size"], r["run"]) for r in rows] == [
        (t["params"]["alpha"], t["params"]["input_size"], t["params"]["run"]) for t in trains
    ]
    assert [r["evaluate_job"] for r in rows] == [e["id"] for e in evaluations]

    # Canceling one row cancels its evaluation and the report; the other rows go on.
    assert client.delete(f"/v1/jobs/{trains[1]['id']}", headers=KEY).status_code == 200
    shown = {j["id"]: client.get(f"/v1/jobs/{j['id']}", headers=KEY).json() for j in jobs}
    assert shown[report["id"]]["state"] == shown[evaluations[1]["id"]]["state"] == "canceled"
    assert shown[report["id"]]["error"]["code"] == "dependency_failed"
    assert [shown[t["id"]]["state"] for t in trains] == ["queued", "canceled", "queued", "queued"]
    assert shown[evaluations[0]["id"]]["state"] == "deferred"


def test_the_cli_submits_a_sweep_with_repeated_alpha_and_input_size_flags() -> None:
    sent: list[dict[str, Any]] = []
    app = typer.Typer()
    spec = JOB_COMMANDS["sweep"]
    app.command("sweep")(build_command("sweep", spec, None, submit=lambda body, **common: sent.append(body)))
    app.command("other")(lambda: None)  # two commands: typer keeps the name
    args = ["sweep", "--dataset", "shapes", "--alpha", "0.35", "--alphas", "0.5", "--input-size", "96", "--epochs", "1"]
    assert CliRunner().invoke(app, args).exit_code == 0
    assert sent == [{"type": "sweep", "dataset": "shapes", "alphas": [0.35, 0.5], "input_sizes": [96], "epochs": 1}]
    refused = CliRunner().invoke(app, ["sweep", "--dataset", "shapes", "--alpha", "0.35"])
    assert refused.exit_code == 2 and "Missing option" in refused.stderr and len(sent) == 1


def test_a_sweep_does_not_run_locally(tmp_path: Path) -> None:
    set_worker_settings(WorkerSettings(_env_file=None, data_dir=tmp_path / "data", model_root=tmp_path / "models"))
    try:
        with pytest.raises(InvalidParameter, match="without --local"):
            run_chain({**SWEEP}, lambda index, record: None)
    finally:
        set_worker_settings(None)


def test_a_finished_sweep_prints_its_table() -> None:
    row = {"label": "0.35@96", "metric": 0.41, "batch1_images_per_second": 50.0, "best_batch": 4}
    row |= {"best_images_per_second": 200.0, "saved_model_bytes": 2_500_000, "pareto": True}
    result = {"metric": "map50", "split": "validation", "rows": [row]}
    with job_view.out.capture() as captured:
        job_view.print_record({"type": "sweep", "id": "x", "state": "finished", "result": result, "artifacts": []})
    line = next(line for line in captured.get().splitlines() if "0.35@96" in line)
    assert [cell.strip() for cell in line.strip("│ ").split("│")] == [
        "0.35@96",
        "0.410",
        "50.0",
        "4",
        "200.0",
        "2.5",
        "yes",
    ]
