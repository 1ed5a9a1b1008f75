"""``SPOTTER_GATEWAY_WORKERS=2``: two gateway processes behind one HTTP port and one gRPC port, both serving.

The gateway runs as a real ``spotter gateway`` child. Which process served a connection is read from the kernel
(psutil: the process that owns the server side of each connection), so no public API is added for it.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.processes import free_port, port_open, spotter_command, start_server

pytestmark = pytest.mark.integration

CONNECTIONS = 24
"""New connections per API: the chance that the kernel gives all of them to one of two processes is 2 ** -23."""


def _wait_for(check: Callable[[], bool], timeout: float, what: str, log: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s:\n{log()[-3000:]}"
        time.sleep(0.2)


def _listening(process: psutil.Process) -> set[int]:
    return {c.laddr.port for c in process.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}


def _server_side(workers: list[psutil.Process], port: int) -> dict[int, set[int]]:
    """For each worker, the client ports of its established connections on ``port``."""
    return {
        w.pid: {
            c.raddr.port
            for c in w.net_connections(kind="tcp")
            if c.laddr and c.laddr.port == port and c.raddr and c.status == psutil.CONN_ESTABLISHED
        }
        for w in workers
    }


def test_two_workers_share_both_ports_and_both_answer(tmp_path: Path) -> None:
    port, grpc_port = free_port(), free_port()
    env = {
        "SPOTTER_GATEWAY_WORKERS": "2",
        "SPOTTER_GRPC_PORT": str(grpc_port),
        "SPOTTER_TFS_GRPC": f"127.0.0.1:{free_port()}",  # no model server: /healthz and gRPC health still answer
        "SPOTTER_MODEL_ROOT": str(tmp_path / "models"),
    }
    server = start_server(
        "gateway-workers",
        spotter_command("gateway", "--host", "127.0.0.1", "--port", str(port)),
        log_dir=tmp_path,
        ready=lambda: port_open(port) and port_open(grpc_port),
        env=env,
        timeout=60,
    )
    try:
        supervisor = psutil.Process(server.pid)

        def both_listen() -> bool:
            children = supervisor.children()
            return len(children) == 2 and all({port, grpc_port} <= _listening(c) for c in children)

        _wait_for(both_listen, 60, "two workers did not listen on both ports", server.log)
        workers = supervisor.children()
        pids = {w.pid for w in workers}
        assert server.pid not in pids and len(pids) == 2

        # HTTP: each new connection is answered, and its server side belongs to one of the workers.
        http_owners: set[int] = set()
        for _ in range(CONNECTIONS):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            assert response.status == 200, response.read()
            response.read()
            client_port = conn.sock.getsockname()[1]
            http_owners |= {pid for pid, ports in _server_side(workers, port).items() if client_port in ports}
            conn.close()
        assert http_owners == pids

        # gRPC: a channel of its own per caller (no shared subchannel), each answered by its worker's health service.
        grpc_owners: set[int] = set()
        options = [("grpc.use_local_subchannel_pool", 1)]
        for _ in range(CONNECTIONS):
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}", options=options) as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
                assert reply.status in (
                    health_pb2.HealthCheckResponse.SERVING,
                    health_pb2.HealthCheckResponse.NOT_SERVING,
                )
                grpc_owners |= {pid for pid, ports in _server_side(workers, grpc_port).items() if ports}
        assert grpc_owners == pids

        # SIGTERM to the supervisor stops the workers and exits cleanly.
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(30) == 0
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive
    finally:
        server.stop()


def test_workers_stop_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    port, grpc_port = free_port(), free_port()
    env = {"SPOTTER_GATEWAY_WORKERS": "2", "SPOTTER_GRPC_PORT": str(grpc_port), "SPOTTER_TFS_GRPC": "127.0.0.1:1"}
    server = start_server(
        "gateway-orphans",
        spotter_command("gateway", "--host", "127.0.0.1", "--port", str(port)),
        log_dir=tmp_path,
        ready=lambda: port_open(port),
        env=env,
        timeout=60,
    )
    workers: list[psutil.Process] = []
    try:
        supervisor = psutil.Process(server.pid)
        _wait_for(lambda: len(supervisor.children()) == 2, 30, "two workers did not start", server.log)
        workers = supervisor.children()
        server.kill()  # SIGKILL: no chance to stop its workers
        _, alive = psutil.wait_procs(workers, timeout=40)
        assert not alive, server.log()[-3000:]
        assert not port_open(port)
    finally:
        for worker in workers:  # orphans are no longer our children: stop them by pid
            if worker.is_running():
                worker.kill()
        server.stop()


def test_a_port_taken_by_another_server_fails_the_start(tmp_path: Path) -> None:
    with socket.socket() as taken:  # a listener without SO_REUSEPORT: the workers may not join it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {**os.environ, "SPOTTER_GATEWAY_WORKERS": "2", "SPOTTER_GRPC_PORT": str(free_port())}
        done = subprocess.run(
            spotter_command("gateway", "--host", "127.0.0.1", "--port", str(taken.getsockname()[1])),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 3, done.stderr[-2000:]
    assert "cannot bind" in done.stderr + done.stdout
