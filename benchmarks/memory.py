"""Memory figures of the gateway-ceiling bench: RSS sampled through a row, and an idle RQ worker's RSS."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import psutil

from benchmarks.inputs import REPO
from services.processes import spotter_command, start_server


class RssSampler:
    """The RSS of some processes, sampled every 0.2 s on a thread while the block runs: max and last per pid."""

    def __init__(self, pids: list[int]) -> None:
        self._procs = [psutil.Process(p) for p in pids]
        self.max: dict[int, int] = dict.fromkeys(pids, 0)
        self.last: dict[int, int] = dict.fromkeys(pids, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for proc in self._procs:
                with contextlib.suppress(psutil.Error):
                    rss = proc.memory_info().rss
                    self.last[proc.pid] = rss
                    self.max[proc.pid] = max(self.max[proc.pid], rss)
            self._stop.wait(0.2)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def idle_worker_rss(work: Path, redis_url: str) -> float | None:
    """The RQ worker's RSS (with its scheduler child) once it listens on ``redis_url`` and is idle; ``None`` when
    it cannot start (no Redis there)."""
    log = work / "logs" / "worker.log"
    try:
        server = start_server(
            "worker",
            spotter_command("worker", "--metrics-port", "0"),
            log_dir=work / "logs",
            ready=lambda: log.exists() and "Listening on" in log.read_text(errors="replace"),
            env={"SPOTTER_DATA_DIR": str(work / "data"), "SPOTTER_LOG_JSON": "false", "SPOTTER_REDIS_URL": redis_url},
            cwd=REPO,
            timeout=60.0,
        )
    except RuntimeError:
        return None
    try:
        time.sleep(2.0)  # past start-up: registries cleaned, the scheduler forked
        parent = psutil.Process(server.pid)
        rss: int = sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)])
        return rss / 1e6
    finally:
        server.stop()
