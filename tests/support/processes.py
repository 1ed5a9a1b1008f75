"""Start real servers as subprocesses on free ports (moved to :mod:`services.processes`, shared with the
benchmarks; re-exported here so tests keep importing them from ``tests.support``)."""

from __future__ import annotations

from services.processes import ServerProcess, free_port, port_open, spotter_command, start_server

__all__ = ["ServerProcess", "free_port", "port_open", "spotter_command", "start_server"]
