"""``spotter run``: the whole of Spotter on one machine, as child processes.

Starts ``spotter modelserver``, then ``spotter gateway`` and ``spotter worker``, with
ports and environment that agree; waits until each answers; prints where they listen; lets their logs through to
this terminal; and on Ctrl-C or SIGTERM stops them all. When one of them dies the others are stopped too, and
``spotter run`` exits with the dead one's exit code.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

import httpx
import typer
from pydantic import Field
from rich.console import Console
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

from services.logs import configure_logging
from services.settings import CommonSettings

logger = logging.getLogger(__name__)


class RunSettings(CommonSettings):
    """Ports of the processes ``spotter run`` starts (the same ``SPOTTER_*`` names the processes read)."""

    http_port: int = Field(8080, ge=1, le=65535)
    grpc_port: int = Field(50051, ge=1, le=65535)
    modelserver_grpc_port: int = Field(8500, ge=1, le=65535)
    modelserver_rest_port: int = Field(8501, ge=1, le=65535)
    run_start_timeout_seconds: float = Field(300.0, gt=0, description="how long each process may take to answer")
    run_stop_timeout_seconds: float = Field(20.0, gt=0, description="how long each may take to stop before a kill")


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]

    def alive(self) -> bool:
        return self.proc.poll() is None


class ChildDied(Exception):
    def __init__(self, child: Child) -> None:
        super().__init__(f"{child.name} exited with code {child.proc.returncode}")
        self.child = child


def _command(*args: str) -> list[str]:
    return [sys.executable, "-c", "from services.cli import main; main()", *args]


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _http_answers(url: str, *, ok_only: bool = False) -> bool:
    try:
        response = httpx.get(url, timeout=2.0)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 if ok_only else True


class Supervisor:
    """Starts, watches and stops the child processes."""

    def __init__(self, settings: RunSettings, console: Console) -> None:
        self.settings = settings
        self.console = console
        self.children: list[Child] = []
        self.stopping = threading.Event()

    def start(self, name: str, args: list[str], env: dict[str, str]) -> Child:
        # A session of its own: Ctrl-C reaches only us, and we stop the children in order.
        proc = subprocess.Popen(_command(*args), env={**os.environ, **env}, start_new_session=True)
        child = Child(name, proc)
        self.children.append(child)
        logger.info("started %s (pid %d)", name, proc.pid)
        return child

    def wait_until(self, child: Child, what: str, check: Callable[[], bool]) -> None:
        """Wait (tenacity) until ``check()`` holds for ``child``; raise ChildDied if any child exits first."""

        def attempt() -> bool:
            if self.stopping.is_set():
                return True
            for started in self.children:  # any of them dying ends the wait, not just the one waited for
                if not started.alive():
                    raise ChildDied(started)
            return bool(check())

        try:
            Retrying(
                retry=retry_if_result(lambda done: not done),
                stop=stop_after_delay(self.settings.run_start_timeout_seconds),
                wait=wait_fixed(0.25),
            )(attempt)
        except RetryError:
            raise TimeoutError(
                f"{child.name} did not {what} within {self.settings.run_start_timeout_seconds:.0f}s"
            ) from None

    def watch(self) -> int:
        """Block until a stop is asked (0) or a child dies (its exit code)."""
        while not self.stopping.wait(0.5):
            for child in self.children:
                if not child.alive():
                    code = child.proc.returncode
                    self.console.print(f"[red]{child.name} exited with code {code}; stopping the others[/red]")
                    return code if code else 1
        return 0

    def stop_all(self) -> None:
        """SIGTERM every child (the last started first), wait, then SIGKILL what still runs."""
        for child in reversed(self.children):
            if child.alive():
                child.proc.send_signal(signal.SIGTERM)
        for child in reversed(self.children):
            try:
                child.proc.wait(self.settings.run_stop_timeout_seconds)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop in time; killing it", child.name)
                child.proc.kill()
                child.proc.wait(5)


def run() -> None:
    """Start the model server, the gateway and the worker on this machine; Ctrl-C stops them all."""
    settings = RunSettings()
    configure_logging(settings.log_level, json=settings.log_json)
    console = Console(stderr=True, soft_wrap=True)
    supervisor = Supervisor(settings, console)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        supervisor.stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    s = settings
    common = {
        "SPOTTER_MODEL_ROOT": str(s.model_root),
        "SPOTTER_REDIS_URL": s.redis_url,
        # TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notes) is noise on a CPU machine.
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
    }
    code = 0
    try:
        modelserver = supervisor.start(
            "modelserver",
            ["modelserver"],
            {
                **common,
                "SPOTTER_MODELSERVER_GRPC_PORT": str(s.modelserver_grpc_port),
                "SPOTTER_MODELSERVER_REST_PORT": str(s.modelserver_rest_port),
            },
        )
        supervisor.wait_until(
            modelserver,
            "answer",
            lambda: (
                _port_open(s.modelserver_grpc_port)
                and _http_answers(f"http://127.0.0.1:{s.modelserver_rest_port}/v1/models/_probe_")
            ),
        )
        gateway = supervisor.start(
            "gateway",
            ["gateway"],
            {
                **common,
                "SPOTTER_HTTP_PORT": str(s.http_port),
                "SPOTTER_GRPC_PORT": str(s.grpc_port),
                "SPOTTER_TFS_GRPC": f"127.0.0.1:{s.modelserver_grpc_port}",
            },
        )
        supervisor.start("worker", ["worker"], common)
        base = f"http://127.0.0.1:{s.http_port}"
        supervisor.wait_until(gateway, "answer", lambda: _http_answers(f"{base}/healthz", ok_only=True))
        _print_where(console, s, base)
        try:
            supervisor.wait_until(gateway, "become ready", lambda: _http_answers(f"{base}/readyz", ok_only=True))
            if not supervisor.stopping.is_set():
                console.print("[green]ready[/green]: the gateway serves; Ctrl-C stops everything")
        except TimeoutError:
            console.print(f"[yellow]the gateway is up but not ready; see {base}/readyz[/yellow]")
        code = supervisor.watch()
    except ChildDied as died:
        console.print(f"[red]{died}[/red]")
        code = died.child.proc.returncode or 1
    except TimeoutError as err:
        console.print(f"[red]{err}[/red]")
        code = 1
    finally:
        supervisor.stop_all()
    raise typer.Exit(code)


def _print_where(console: Console, s: RunSettings, base: str) -> None:
    console.print("[bold]Spotter is running[/bold]")
    console.print(f"  gateway REST   {base}   (API docs: {base}/docs, metrics: {base}/metrics)")
    if importlib.util.find_spec("services.gateway.rpc") is not None:
        console.print(f"  gateway gRPC   127.0.0.1:{s.grpc_port}")
    console.print(
        f"  model server   gRPC 127.0.0.1:{s.modelserver_grpc_port}, REST http://127.0.0.1:{s.modelserver_rest_port}"
    )
    console.print(f"  worker         jobs from {s.redis_url}")
    console.print(f"  models         {s.model_root.resolve()}")
    console.print(f"  try: spotter detect IMAGE --url {base}")


def register(app: typer.Typer) -> None:
    app.command()(run)
