"""Start real servers as subprocesses on free ports, wait until they answer, and stop them.

Shared by the tests (``tests/support``) and the benchmarks (``benchmarks/``), which both run Spotter's servers as
real child processes; ``spotter run`` has its own supervisor (it forwards signals and watches several children).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed


def free_port() -> int:
    """A TCP port that nobody listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


@dataclass
class ServerProcess:
    """A server started as a child process: its process and the file its output goes to."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        """Everything the server wrote so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def spotter_command(*args: str) -> list[str]:
    """The ``spotter`` command of this environment (this interpreter), with arguments."""
    return [sys.executable, "-c", "from services.cli import main; main()", *args]


def start_server(
    name: str,
    args: Sequence[str],
    *,
    log_dir: Path,
    ready: Callable[[], bool],
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
    cwd: Path | None = None,
) -> ServerProcess:
    """Start ``args`` and wait until ``ready()`` is true.

    Raises:
        RuntimeError: the process exited before it was ready, or was not ready within ``timeout`` seconds (then it
            is stopped); the message holds the end of its log.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    full_env = {**os.environ, **(env or {})}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(list(args), stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=cwd)
    server = ServerProcess(name, proc, log_path)
    # Wait until it answers, or until it has died (no point waiting for a dead process).
    Retrying(
        retry=retry_if_result(lambda done: not done),
        stop=stop_after_delay(timeout),
        wait=wait_fixed(0.2),
        retry_error_callback=lambda _: False,
    )(lambda: not server.alive() or ready())
    if not server.alive():
        raise RuntimeError(f"{name} exited with {proc.returncode} before it was ready:\n{server.log()[-4000:]}")
    if not ready():
        server.stop()
        raise RuntimeError(f"{name} was not ready within {timeout:.0f}s:\n{server.log()[-4000:]}")
    return server
