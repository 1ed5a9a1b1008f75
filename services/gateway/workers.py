"""``SPOTTER_GATEWAY_WORKERS=N``: N gateway processes serving one HTTP port and one gRPC port.

The gateway is one asyncio process: its event loop, HTTP parsing, protobuf and answer encoding are bound to one core
whatever the decode threads do. With ``N > 1``, ``spotter gateway`` becomes a small supervisor that starts ``N``
complete gateways (each its own app, catalog, batcher, TFS channel and metrics) which share nothing but the ports:
each binds them with ``SO_REUSEPORT`` and the kernel spreads new connections over them. Batching is per process, so
each batch is formed from that process's requests.

The supervisor binds both ports first (without listening), which checks they are free, resolves port 0 to a real
port for every worker, and keeps them reserved while workers come and go. It forwards SIGTERM/SIGINT to the workers
and waits for their graceful shutdown. When one worker exits, the others are stopped and the supervisor exits with
that worker's code: the process is restarted whole by whatever runs it (``spotter run``, Kubernetes), rather than
limping on with fewer processes than configured. A worker whose supervisor is gone (killed with SIGKILL) stops by
itself.

``/metrics`` is per process: a scrape is answered by whichever worker accepts the connection. On Kubernetes, prefer
one worker per pod and more pods (every pod is scraped); workers are for a single host with several cores.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from types import FrameType

from services.gateway.config import GatewaySettings

logger = logging.getLogger(__name__)

_WORKER_COMMAND = "from services.gateway.workers import worker_main; worker_main({supervisor})"
STARTUP_FAILURE = 3
"""The exit code of a gateway that could not start (the CLI's, and uvicorn's)."""


def shared_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT`` (not listening: a bound socket gets no connections).

    Raises:
        OSError: the port is taken by a socket without ``SO_REUSEPORT`` (another server).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def supervise(settings: GatewaySettings) -> int:
    """Run ``settings.gateway_workers`` gateway processes on the settings' ports until a signal or a worker's exit;
    returns the exit code for the command."""
    try:
        http = shared_socket(settings.http_host, settings.http_port)
        grpc = shared_socket(settings.grpc_host, settings.grpc_port)
    except OSError as err:
        logger.error("the gateway cannot bind its ports: %s", err)
        return STARTUP_FAILURE
    with http, grpc:
        http_port, grpc_port = http.getsockname()[1], grpc.getsockname()[1]
        env = {
            **os.environ,
            "SPOTTER_HTTP_HOST": settings.http_host,
            "SPOTTER_HTTP_PORT": str(http_port),
            "SPOTTER_GRPC_HOST": settings.grpc_host,
            "SPOTTER_GRPC_PORT": str(grpc_port),
            "SPOTTER_GATEWAY_WORKERS": str(settings.gateway_workers),
        }
        stopping: list[int] = []

        def stop(signum: int, _: FrameType | None) -> None:
            stopping.append(signum)

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        workers = [
            subprocess.Popen([sys.executable, "-c", _WORKER_COMMAND.format(supervisor=os.getpid())], env=env)
            for _ in range(settings.gateway_workers)
        ]
        logger.info(
            "gateway: %d worker processes %s on HTTP port %d and gRPC port %d",
            len(workers),
            [w.pid for w in workers],
            http_port,
            grpc_port,
        )
        try:
            code = _wait(workers, stopping)
        finally:
            _stop_all(workers, timeout=settings.grpc_grace_seconds + 15.0)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return code


def _wait(workers: list[subprocess.Popen[bytes]], stopping: list[int]) -> int:
    """Until a signal came (0) or a worker exited (its code, or 1 when it exited cleanly by itself)."""
    while not stopping:
        for worker in workers:
            code = worker.poll()
            if code is not None:
                logger.error("gateway worker %d exited with %d; stopping the others", worker.pid, code)
                return code or 1
        time.sleep(0.2)
    logger.info("gateway: signal %d, stopping %d workers", stopping[0], len(workers))
    return 0


def _stop_all(workers: list[subprocess.Popen[bytes]], timeout: float) -> None:
    for worker in workers:
        if worker.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                worker.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for worker in workers:
        try:
            worker.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.warning("gateway worker %d did not stop in %.0f s; killing it", worker.pid, timeout)
            worker.kill()
            worker.wait(5)


def worker_main(supervisor: int) -> None:
    """One worker of the process ``supervisor``: a whole gateway on the supervisor's ports (from its environment),
    its HTTP socket shared."""
    import uvicorn

    from services.gateway.app import create_app
    from services.gateway.httpserver import server_config
    from services.gateway.runtime import tune_process
    from services.logs import configure_logging

    settings = GatewaySettings()
    configure_logging(settings.log_level, json=settings.log_json)
    _exit_with_supervisor(supervisor)
    sock = shared_socket(settings.http_host, settings.http_port)
    server = uvicorn.Server(server_config(create_app(settings), settings))
    tune_process()
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])
    sys.exit(0 if server.started else STARTUP_FAILURE)


def _exit_with_supervisor(supervisor: int) -> None:
    """SIGTERM this worker (a graceful stop) once its supervisor is gone (even killed without a word, or before
    this worker got here: then its parent is already another process)."""

    def watch() -> None:
        while os.getppid() == supervisor:
            time.sleep(1.0)
        logger.error("the gateway supervisor %d is gone; stopping worker %d", supervisor, os.getpid())
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()
