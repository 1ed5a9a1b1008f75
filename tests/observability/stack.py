"""The whole serving stack for the Prometheus test: model server, gateway, worker and Prometheus, each a real
subprocess on free ports, plus the traffic and jobs that fill their metrics.

- Model server: ``spotter modelserver`` over a copy of ``models/demo`` when the repository has a version of it,
  else over the tiny test detector (``tests/support/tiny_models.py``, with warmup records) named ``demo``; its
  version 1 is copied as version 2 and both are served, so that version 1 can run in shadow (the shadow metrics).
- Gateway: ``spotter gateway`` with a small batch queue (8 images) and at most 8 tiles, so that one request with
  ``tile=on`` on a wide image (8 tiles plus the whole image: 9 views) is always refused as overloaded.
- Worker: ``spotter worker`` on its own Redis database; jobs are Spotter's real dataset import.
- Prometheus: ``deploy/prometheus/prometheus.yml`` with local targets, 1 s intervals and alerts.yml with ``for: 1s``.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis
import yaml
from PIL import Image

from services.jobs.queues import DATA_QUEUE, enqueue, fetch_job
from services.jobs.types import IMPORT, import_body
from services.store.datasets.annotations import SourceFormat
from services.store.datasets.request import ImportRequest
from services.vision.tiling import plan_views
from tests.observability.support import REPO, Prometheus, local_config, rules_with_short_for, start_prometheus
from tests.support.modelserver import ModelServerHandle, running_model_server
from tests.support.processes import ServerProcess, free_port, spotter_command, start_server
from tests.support.tiny_models import build_models

MODEL = "demo"
API_KEY = "observability-test-key"
SHADOW_SAMPLES = 6
REDIS_DB = 12  # the observability tests' own database: other tests flush 13 while these run for a minute
QUEUE_SIZE = 8
MAX_TILES = 8


@dataclass
class Stack:
    """The running processes and what the traffic left behind (for assertions)."""

    modelserver: ModelServerHandle
    gateway: ServerProcess
    gateway_url: str
    worker: ServerProcess
    prometheus: Prometheus
    redis_url: str
    model_source: str
    started: float  # wall clock when Prometheus began scraping (start of range queries)
    statuses: dict[str, int] = field(default_factory=dict)  # what the traffic got, by kind
    request_ids: dict[str, str] = field(default_factory=dict)
    jobs: dict[str, str] = field(default_factory=dict)  # job id -> its final RQ status


def populate_models(root: Path) -> str:
    """Fill ``root`` with the model ``demo`` (version 1, and the same as version 2); says which one it is."""
    demo = REPO / "models" / MODEL
    if demo.is_dir() and any(p.name.isdigit() and (p / "saved_model.pb").exists() for p in demo.iterdir()):
        shutil.copytree(demo / "1", root / MODEL / "1")
        source = "a copy of models/demo"
    else:
        build_models([("detector", root / MODEL / "1", {"size": 16, "warmup": 2})])
        source = "the tiny test detector (models/demo has no version yet)"
    shutil.copytree(root / MODEL / "1", root / MODEL / "2")
    return source


def models_config(root: Path) -> Path:
    """A TFS models.config serving every version of ``demo`` (TFS's default policy serves only the latest)."""
    path = root.parent / "models.config"
    entry = (
        f'name: "{MODEL}" base_path: "{root / MODEL}" model_platform: "tensorflow" model_version_policy {{ all {{}} }}'
    )
    path.write_text(f"model_config_list {{ config {{ {entry} }} }}\n")
    return path


def send_shadow_traffic(url: str, stack: Stack) -> None:
    """Version 1 in shadow of version 2 (the same model), and a few detections, one at a time, through both."""
    headers = {"X-API-Key": API_KEY}
    shadow = f"{url}/v1/models/{MODEL}/versions/1:shadow"
    deadline = time.monotonic() + 60
    while (response := httpx.post(shadow, json={"sample_rate": 1.0}, headers=headers, timeout=10)).status_code != 200:
        assert response.status_code == 409 and time.monotonic() < deadline, response.text  # version 1 still loading
        time.sleep(0.2)
    image = png(32, 24, 128)
    time.sleep(1.5)  # a scrape of the shadow's series at 0 first, so that their rates have a start
    for _ in range(SHADOW_SAMPLES):
        time.sleep(0.3)  # spread over a few scrapes
        answer = httpx.post(f"{url}/v1/models/{MODEL}:detect", content=image, headers={"Content-Type": "image/png"})
        stack.statuses[f"shadowed {answer.status_code}"] = stack.statuses.get(f"shadowed {answer.status_code}", 0) + 1
    figures = f"{url}/v1/models/{MODEL}/versions/1/shadow"
    while True:  # every sample compared, or shed (counted): the shadow metrics all have series
        body = httpx.get(figures, headers=headers, timeout=10).json()
        if body["samples"] + sum(body["dropped"].values()) >= SHADOW_SAMPLES:
            break
        assert time.monotonic() < deadline, f"the shadow runs did not finish within 60 s: {body}"
        time.sleep(0.1)


def png(width: int, height: int, value: int) -> bytes:
    rng = np.random.default_rng(value)
    pixels = np.clip(value + rng.integers(-20, 20, (height, width, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def wide_image_size(input_size: int) -> tuple[int, int]:
    """A size for which ``tile=on`` plans exactly ``MAX_TILES`` tiles plus the whole image (more than the queue)."""
    for width in range(input_size * 2, input_size * 20):
        if len(plan_views(width, input_size, input_size, "on", overlap=0.25, max_tiles=MAX_TILES)) == MAX_TILES + 1:
            return width, input_size
    raise AssertionError(f"no image size gives {MAX_TILES} tiles for input size {input_size}")


def write_folder_dataset(root: Path) -> Path:
    """A tiny classification set in class folders (two classes, three images each) for a real import."""
    for label, value in (("dark", 40), ("light", 220)):
        (root / label).mkdir(parents=True)
        for i in range(3):
            (root / label / f"{i}.png").write_bytes(png(32, 32, value + i))
    return root


def enqueue_jobs(connection: redis.Redis, data_dir: Path) -> dict[str, str]:
    """One import that finishes, one refused for its input, three that fail for the system's reasons."""
    source = write_folder_dataset(data_dir / "incoming" / "shades")
    good = ImportRequest(name="shades", format=SourceFormat.FOLDERS, source=source)
    missing = ImportRequest(name="ghost", format=SourceFormat.FOLDERS, source=data_dir / "incoming" / "nothing-here")
    jobs = {  # job id -> the outcome its metrics must show
        enqueue(connection, DATA_QUEUE, IMPORT.func, import_body(good), job_type="import").id: "finished",
        enqueue(connection, DATA_QUEUE, IMPORT.func, import_body(missing), job_type="import", retries=0).id: "rejected",
    }
    for _ in range(3):  # a body without its request: a KeyError in the job, which is the system's fault
        jobs[enqueue(connection, DATA_QUEUE, IMPORT.func, {}, job_type="import", retries=0).id] = "failed"
    return jobs


def wait_for_jobs(connection: redis.Redis, ids: list[str], timeout: float = 150.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    ended = {"finished", "failed", "stopped", "canceled"}
    statuses: dict[str, str] = {}
    while time.monotonic() < deadline:
        statuses = {job_id: str(fetch_job(job_id, connection).get_status(refresh=True)) for job_id in ids}
        statuses = {k: v.rsplit(".", 1)[-1].lower() for k, v in statuses.items()}
        if all(status in ended for status in statuses.values()):
            return statuses
        time.sleep(0.5)
    raise AssertionError(f"jobs did not end within {timeout:.0f}s: {statuses}")


def send_traffic(url: str, input_size: int, stack: Stack) -> None:
    """Detections of every sort, client mistakes (4xx), overloads (503); a few rounds so rates have samples."""
    detect = f"{url}/v1/models/{MODEL}:detect"

    def post(
        kind: str, endpoint: str, body: bytes, params: dict[str, Any], headers: dict[str, str] | None = None
    ) -> int:
        response = httpx.post(
            endpoint, content=body, params=params, headers={"Content-Type": "image/png", **(headers or {})}, timeout=30
        )
        stack.statuses[f"{kind} {response.status_code}"] = stack.statuses.get(f"{kind} {response.status_code}", 0) + 1
        if headers and "X-Request-ID" in headers:
            assert response.headers["X-Request-ID"] == headers["X-Request-ID"]
        return response.status_code

    wide = png(*wide_image_size(input_size), 128)
    images = [png(24 + 8 * (i % 5), 20 + 6 * (i % 4), 60 + 15 * (i % 12)) for i in range(12)]
    scenes = [p.read_bytes() for p in sorted((REPO / "models" / MODEL / "examples").glob("scene-*.png"))]
    with ThreadPoolExecutor(4) as pool:  # at most 4 images queued at once: never more than the queue holds
        for round_ in range(4):
            work = [
                (
                    "detect",
                    detect,
                    images[i % len(images)],
                    {"tile": "off", "min_score": 0.01 if i % 2 else 0.3},
                    {"X-Request-ID": f"obs-detect-{round_}-{i}"} if i % 5 == 0 else None,
                )
                for i in range(12)
            ]
            # Scenes with real objects, so the detection-score metrics have samples whichever model serves.
            work += [("detect", detect, scene, {"min_score": 0.3}, None) for scene in scenes]
            work += [("annotate", f"{url}/v1/models/{MODEL}:annotate", images[0], {"tile": "off"}, None)]
            work += [("classify", f"{url}/v1/models/{MODEL}:classify", images[1], {}, None)]  # 422: a detector
            work += [("bad-image", detect, b"this is not an image", {"tile": "off"}, None)]  # 400
            work += [("bad-score", detect, images[2], {"min_score": 2}, None)]  # 422
            work += [("unknown-model", f"{url}/v1/models/nope:detect", images[3], {}, None)]  # 404
            list(pool.map(lambda w: post(*w), work))
            # One at a time, so that each alone overflows the queue: 9 views for 8 places, refused at once.
            for i in range(3):
                rid = f"obs-overload-{round_}-{i}"
                stack.request_ids.setdefault("overload", rid)
                post("overload", detect, wide, {"tile": "on"}, {"X-Request-ID": rid})
            httpx.get(f"{url}/v1/models", timeout=10)
            time.sleep(1.2)
    # The model server logs the status poll the gateway makes for an unknown model, with the client's id (a name
    # asked for the first time: the gateway answers names it has just polled from a short negative cache).
    stack.request_ids["unknown-model"] = "obs-unknown-model-1"
    post("unknown-model", f"{url}/v1/models/never-asked:detect", images[3], {}, {"X-Request-ID": "obs-unknown-model-1"})


@contextlib.contextmanager
def running_stack(base: Path) -> Iterator[Stack]:
    """Start everything, send the traffic, run the jobs; stop whatever is still running at the end."""
    redis_url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    connection = redis.Redis.from_url(redis_url)
    connection.flushdb()
    data_dir = base / "data"
    data_dir.mkdir(parents=True)
    model_root = base / "models"
    model_root.mkdir()
    logs = base / "logs"
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(connection.close)
        cleanup.callback(connection.flushdb)
        common = {"SPOTTER_REDIS_URL": redis_url, "SPOTTER_DATA_DIR": str(data_dir), "SPOTTER_LOG_JSON": "true"}

        worker_port = free_port()
        worker = start_server(
            "worker",
            spotter_command("worker"),
            log_dir=logs,
            ready=lambda: _answers(f"http://127.0.0.1:{worker_port}/metrics"),
            env={**common, "SPOTTER_WORKER_METRICS_PORT": str(worker_port), "TF_CPP_MIN_LOG_LEVEL": "2"},
            cwd=REPO,
        )
        cleanup.callback(worker.stop)

        model_source = populate_models(model_root)
        modelserver = cleanup.enter_context(
            running_model_server(model_root, log_dir=logs, config_file=models_config(model_root), wait_for=[MODEL])
        )

        gateway_port = free_port()
        gateway_url = f"http://127.0.0.1:{gateway_port}"
        gateway = start_server(
            "gateway",
            spotter_command("gateway", "--host", "127.0.0.1", "--port", str(gateway_port)),
            log_dir=logs,
            ready=lambda: _answers(f"{gateway_url}/readyz"),
            env={
                **common,
                "SPOTTER_TFS_GRPC": modelserver.grpc_target,
                "SPOTTER_GRPC_PORT": str(free_port()),
                "SPOTTER_MODEL_ROOT": str(model_root),
                "SPOTTER_MAX_QUEUE_SIZE": str(QUEUE_SIZE),
                "SPOTTER_MAX_TILES": str(MAX_TILES),
                "SPOTTER_MAX_BATCH_SIZE": "4",
                "SPOTTER_CATALOG_REFRESH_SECONDS": "0.5",
                "SPOTTER_TFS_DEADLINE_SECONDS": "5",
                "SPOTTER_API_KEYS": API_KEY,
                "SPOTTER_WARMUP_SAMPLES": "4",  # the traffic sample (off by default) and its metric
            },
            cwd=REPO,
        )
        cleanup.callback(gateway.stop)

        rules = base / "prometheus" / "alerts-test.yml"
        rules.parent.mkdir(parents=True)
        rules.write_text(yaml.safe_dump(rules_with_short_for("1s"), sort_keys=False))
        targets = {
            "spotter-gateway": f"127.0.0.1:{gateway_port}",
            "spotter-tfs": f"127.0.0.1:{modelserver.rest_port}",
            "spotter-worker": f"127.0.0.1:{worker_port}",
        }
        prometheus = start_prometheus(local_config(targets, rules), base / "prometheus")
        cleanup.callback(prometheus.stop)
        started = time.time()
        prometheus.wait(
            "every target up",
            lambda: sorted(t["labels"]["job"] for t in prometheus.targets() if t["health"] == "up") == sorted(targets),
        )

        stack = Stack(modelserver, gateway, gateway_url, worker, prometheus, redis_url, model_source, started)
        job_ids = enqueue_jobs(connection, data_dir)
        described = httpx.get(f"{gateway_url}/v1/models/{MODEL}", timeout=10).json()
        input_size = next(v["input_size"] for v in described["versions"] if v.get("input_size"))
        send_traffic(gateway_url, input_size, stack)
        send_shadow_traffic(gateway_url, stack)
        stack.jobs = wait_for_jobs(connection, list(job_ids))
        expected = {job_id: "finished" if outcome == "finished" else "failed" for job_id, outcome in job_ids.items()}
        assert stack.jobs == expected, f"jobs ended {stack.jobs}, not {expected}:\n{worker.log()[-3000:]}"
        time.sleep(2.5)  # a few more scrapes: the last counts, and rates over the last samples
        yield stack


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False
