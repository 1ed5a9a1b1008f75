"""Hostile images through a real gateway: the corpus in ``tests/data/hostile/images/``, and the lying JPEG under load.

A JPEG whose header claims 7000 x 7000 but whose data is that of a 16 x 16 image must be a 400 before anything is
decoded, and eight clients looping on it must not move the gateway's memory (it used to decode 49 M pixels each).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import ImageFile

from services.errors import SpotterError
from services.processes import ServerProcess, free_port, spotter_command, start_server
from tests.gateway.helpers import RunningGateway, gateway_settings, running_gateway, solid
from tests.rpc.helpers import grpc_target, metric_value
from tests.support.hostile_images import CORPUS_DIR, MANIFEST, corpus, lying_jpeg
from tests.support.modelserver import ModelServerHandle

pytestmark = pytest.mark.integration

ENTRIES = json.loads(MANIFEST.read_text())


@pytest.fixture(scope="module")
def gateway(model_server: ModelServerHandle) -> Iterator[RunningGateway]:
    with running_gateway(gateway_settings(model_server.grpc_target, grpc_host="127.0.0.1")) as running:
        yield running


def test_the_stored_corpus_is_what_the_generator_describes() -> None:
    # The files are data (CI replays them); the generator says what each must answer. They must agree.
    made = {entry.name: (entry.status, entry.code) for entry in corpus()}
    stored = {name: (entry["status"], entry["code"]) for name, entry in ENTRIES.items()}
    assert stored == made
    assert sorted(p.name for p in CORPUS_DIR.iterdir() if p.name != MANIFEST.name) == sorted(made)


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_each_hostile_image_gets_its_answer(gateway: RunningGateway, name: str) -> None:
    expected = ENTRIES[name]
    body = (CORPUS_DIR / name).read_bytes()
    response = httpx.post(
        f"{gateway.url}/v1/models/tiny:detect?tile=auto",
        content=body,
        headers={"Content-Type": "application/octet-stream"},
        timeout=30,
    )
    assert response.status_code == expected["status"], response.text
    if expected["code"] is not None:
        error = response.json()["error"]
        assert error["code"] == expected["code"]
        assert error["message"]


def test_the_lying_jpeg_is_refused_before_decoding(gateway: RunningGateway) -> None:
    decodes = metric_value(gateway, "spotter_decode_seconds_count", model="tiny")
    response = httpx.post(
        f"{gateway.url}/v1/models/tiny:detect", content=lying_jpeg(), headers={"Content-Type": "image/jpeg"}, timeout=30
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert "7000x7000" in error["message"] and "truncated or its header is wrong" in error["message"]
    assert error["details"]["min_bytes"] > error["details"]["bytes"]
    assert metric_value(gateway, "spotter_decode_seconds_count", model="tiny") == decodes


def test_the_lying_jpeg_over_grpc_is_invalid_argument(gateway: RunningGateway) -> None:
    import grpc

    from services.client.rpc import DetectionClient

    with DetectionClient(grpc_target(gateway), timeout=30) as client, pytest.raises(SpotterError) as raised:
        client.detect(lying_jpeg(), model="tiny", content_type="image/jpeg")
    cause = raised.value.__cause__
    assert isinstance(cause, grpc.RpcError)
    assert cause.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "7000x7000" in raised.value.message


def test_pillow_never_loads_truncated_images() -> None:
    # With LOAD_TRUNCATED_IMAGES on, Pillow pads a truncated file instead of raising: it must stay off once the
    # gateway (and everything it imports) is loaded.
    import services.gateway.app  # noqa: F401

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# -- memory under the lying-JPEG load ----------------------------------------------------------------------------

CLIENTS = 8
REQUESTS_PER_CLIENT = 40
RSS_GROWTH_BOUND_MIB = 100  # one decode of the claimed 7000 x 7000 would allocate 140 MiB; eight at once ~1.1 GiB


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


@pytest.fixture(scope="module")
def gateway_process(
    model_server: ModelServerHandle, tiny_models: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The gateway as its own process (``spotter gateway``), so its memory is its own; yields its URL."""
    work = tmp_path_factory.mktemp("gateway-process")
    (work / "models").mkdir()
    (work / "models" / "tiny").symlink_to(tiny_models / "root" / "tiny", target_is_directory=True)
    port = free_port()
    env = {
        "SPOTTER_MODEL_ROOT": str(work / "models"),
        "SPOTTER_TFS_GRPC": model_server.grpc_target,
        "SPOTTER_HTTP_HOST": "127.0.0.1",
        "SPOTTER_HTTP_PORT": str(port),
        "SPOTTER_GRPC_HOST": "127.0.0.1",
        "SPOTTER_GRPC_PORT": "0",
        "SPOTTER_DATA_DIR": str(work / "data"),
        "SPOTTER_REDIS_URL": f"redis://127.0.0.1:6379/{os.environ.get('SPOTTER_TEST_REDIS_DB', '15')}",
        "SPOTTER_LOG_LEVEL": "WARNING",
    }
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    server: ServerProcess = start_server("gateway", spotter_command("gateway"), log_dir=work, ready=ready, env=env)
    try:
        yield f"{url}|{server.pid}"
    finally:
        server.stop()


def test_eight_clients_looping_on_the_lying_jpeg_leave_memory_flat(gateway_process: str) -> None:
    url, pid_text = gateway_process.split("|")
    pid = int(pid_text)
    lie = lying_jpeg()
    with httpx.Client(base_url=url, timeout=30) as http:
        # Warm up every path the load takes (first requests allocate caches, thread pools, metric series).
        for _ in range(20):
            assert (
                http.post("/v1/models/tiny:detect", content=lie, headers={"Content-Type": "image/jpeg"}).status_code
                == 400
            )
            assert http.post("/v1/models/tiny:detect", content=solid(64, 48)).status_code == 200
    before = rss_mib(pid)
    peak = before
    statuses: list[int] = []
    done = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            for _ in range(REQUESTS_PER_CLIENT):
                response = http.post("/v1/models/tiny:detect", content=lie, headers={"Content-Type": "image/jpeg"})
                statuses.append(response.status_code)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    watcher_peak: list[float] = []

    def watch() -> None:
        while not done.is_set():
            watcher_peak.append(rss_mib(pid))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    with httpx.Client(base_url=url, timeout=30) as http:  # a normal client is served meanwhile
        normal = http.post("/v1/models/tiny:detect", content=solid(64, 48))
    for thread in threads:
        thread.join(120)
    done.set()
    watcher.join(10)
    peak = max([peak, *watcher_peak, rss_mib(pid)])
    assert normal.status_code == 200, normal.text
    assert statuses == [400] * (CLIENTS * REQUESTS_PER_CLIENT)
    growth = peak - before
    # The figure for the record (pytest -s shows it): baseline, peak and growth of the gateway's RSS.
    Path(os.environ.get("SPOTTER_RSS_REPORT", os.devnull)).write_text(
        f"rss before {before:.1f} MiB, peak {peak:.1f} MiB, growth {growth:.1f} MiB over {len(statuses)} requests\n"
    )
    assert growth < RSS_GROWTH_BOUND_MIB, f"RSS grew {growth:.0f} MiB ({before:.0f} -> {peak:.0f})"
