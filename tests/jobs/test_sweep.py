"""A small sweep end to end through real RQ workers: 2 alphas x 1 input size on a tiny generated dataset, one epoch
of a few steps. The rows train side by side on two workers, each is evaluated, and the report measures both exports
in turns on the split's own images (images/s at batch 1 and 2, with the load average; bytes on disk) and writes the
table and the plot; then a row is exported and published like any run, and the model server serves it.

What is checked is what the sweep computes from what it measured (the table's rows, the Pareto flags, which batch is
the best), never how fast the machine is.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.training.sweep_table import pareto_front
from tests.datasets.fixtures import scenes, write_voc_dataset
from tests.jobs.support import KEY, running_job_stack, upload, wait_job, zip_folder

pytestmark = pytest.mark.integration

SIZE = 96
SWEEP = {
    "type": "sweep",
    "dataset": "tiny",
    "alphas": [0.35, 0.5],
    "input_sizes": [SIZE],
    "run_prefix": "tiny-sw",
    "weights": "none",
    "epochs": 1,
    "steps_per_epoch": 2,
    "batch_size": 4,
    "patience": 0,
    "batches": [2],
    "measure_seconds": 0.1,
    "measure_rounds": 2,
}


@pytest.mark.timeout(1500)
def test_a_small_sweep_trains_rows_in_parallel_tables_them_and_a_row_publishes(tmp_path: Path) -> None:
    with running_job_stack(tmp_path, ("worker-1", "worker-2"), http_timeout=60) as stack:
        http, workers = stack.http, stack.workers
        write_voc_dataset(tmp_path / "voc", scenes(count=16, size=SIZE))
        imported = upload(http, "tiny", "voc", zip_folder(tmp_path / "voc"), split="0.75")
        assert wait_job(http, imported, timeout=180, workers=workers)["state"] == "finished"

        answer = http.post("/v1/jobs", json=SWEEP, headers=KEY)
        assert answer.status_code == 202, answer.text
        submitted = answer.json()
        trains = [j["id"] for j in submitted["jobs"] if j["type"] == "train"]
        report = wait_job(http, submitted["job_id"], timeout=1200, workers=workers)
        assert report["state"] == "finished" and report["type"] == "sweep", report

        # The two rows' training overlapped: one started before the other ended.
        first, second = (http.get(f"/v1/jobs/{t}", headers=KEY).json() for t in trains)
        assert first["started_at"] <= second["ended_at"] and second["started_at"] <= first["ended_at"]

        result = report["result"]
        rows = result["rows"]
        assert result["metric"] == "map50" and result["kind"] == "detector" and result["split"] == "validation"
        assert result["inputs"] == "validation images"  # measured on the split's own images, letterboxed
        assert [r["label"] for r in rows] == ["0.35@96", "0.5@96"]
        assert [r["run"] for r in rows] == ["tiny-sw-a0.35-s96", "tiny-sw-a0.5-s96"]
        for row in rows:
            assert set(row["images_per_second"]) == {"1", "2"} and all(v > 0 for v in row["images_per_second"].values())
            assert row["best_images_per_second"] == max(row["images_per_second"].values())
            assert str(row["best_batch"]) in row["images_per_second"] and row["train_seconds"] > 0
            assert row["metric"] is not None and 0.0 <= row["metric"] <= 1.0
            assert row["load_average"] is not None and row["load_average"] >= 0.0
        # A wider backbone has more weights, and its SavedModel more bytes.
        assert rows[1]["parameters"] > rows[0]["parameters"]
        assert rows[1]["saved_model_bytes"] > rows[0]["saved_model_bytes"] > 0
        assert [r["pareto"] for r in rows] == pareto_front([(r["metric"], r["best_images_per_second"]) for r in rows])
        assert result["pareto"] == [r["label"] for r in rows if r["pareto"]] and result["pareto"]
        assert report["counts"] == {"rows": 2, "pareto": len(result["pareto"])}

        names = {a["name"] for a in report["artifacts"]}
        assert {"sweep.json", "sweep.md", "sweep.csv", "sweep.png", "result.json"} <= names
        plot = http.get(f"/v1/jobs/{report['id']}/artifacts/sweep.png", headers=KEY)
        assert plot.status_code == 200 and plot.content[:4] == b"\x89PNG"
        table = http.get(f"/v1/jobs/{report['id']}/artifacts/sweep.json", headers=KEY).json()
        assert table["rows"] == rows
        markdown = http.get(f"/v1/jobs/{report['id']}/artifacts/sweep.md", headers=KEY).text
        assert len(markdown.strip().splitlines()) == 2 + len(rows) and "tiny-sw-a0.5-s96" in markdown
        left = list((tmp_path / "data" / "jobs" / report["id"]).glob(".*"))
        assert left == [], left  # the measured exports are gone

        # Any row is a normal run: an export job publishes it.
        export = http.post(
            "/v1/jobs", json={"type": "export", "run": rows[0]["run"], "model": "tiny", "force": True}, headers=KEY
        )
        assert export.status_code == 202, export.text
        published = wait_job(http, export.json()["job_id"], timeout=600, workers=workers)
        assert published["state"] == "finished", published
        assert (published["result"]["model"], published["result"]["version"]) == ("tiny", 1)
        stack.model_server.wait_available("tiny", 1, timeout=60)
        shown = http.get("/v1/models/tiny").json()
        assert shown["versions"][0]["version"] == 1
        print(
            "\nsweep rows:",
            json.dumps(
                [{k: r[k] for k in ("label", "metric", "best_images_per_second", "saved_model_bytes")} for r in rows]
            ),
        )
