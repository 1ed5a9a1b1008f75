"""The worker's child processes die with it.

RQ's worker forks a work-horse per job (which puts itself in its own process group) and, with its scheduler, a
scheduler process. Killed with SIGKILL, the worker cannot stop them: they are reparented to PID 1, the job trains on
and ends ``finished``, and the scheduler keeps the scheduler locks and every socket it inherited (the metrics port).

:func:`guard_children` makes each process the worker's main process forks from then on ask the kernel for a signal
when its parent dies (Linux's ``PR_SET_PDEATHSIG``, set through ``prctl`` in the child right after the fork, by an
``os.register_at_fork`` hook, so RQ's own fork paths need no change). The signal is SIGTERM: the work-horse has
SIGTERM at its default action (RQ sets it so) and ends at once; the scheduler stops on it, releasing its locks and
registering its death, so the next worker's scheduler can take over. A child whose parent died between the fork and
the ``prctl`` call sees it (its parent is no longer the worker) and exits.

Only direct children of the guarding process are affected (a work-horse's own children are the job's business), and
only while :func:`guard_children` is on. ``prctl`` has no binding in the standard library and no maintained package
on PyPI, hence the few lines of ``ctypes`` here; other systems than Linux go unguarded (logged once).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
DEATH_SIGNAL = signal.SIGTERM

_guarding_pid: int | None = None
_hook_installed = False


def die_with_parent(parent_pid: int, sig: int = DEATH_SIGNAL) -> bool:
    """In a child just forked by ``parent_pid``: have the kernel send ``sig`` when the parent dies; exits at once
    when the parent is already gone. False where ``prctl`` is not available (not Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        logger.warning("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(errno))
        return False
    if os.getppid() != parent_pid:  # the parent died before the prctl call: no signal will come
        os._exit(1)
    return True


def _after_fork_in_child() -> None:
    parent = _guarding_pid
    if parent is not None and os.getppid() == parent:
        die_with_parent(parent)


@contextmanager
def guard_children() -> Iterator[None]:
    """While inside: every process this one forks dies with it (see the module's text)."""
    global _guarding_pid, _hook_installed
    if not sys.platform.startswith("linux"):
        logger.warning("worker children are not tied to the worker on %s: a killed worker leaves them", sys.platform)
    if not _hook_installed:
        os.register_at_fork(after_in_child=_after_fork_in_child)  # hooks cannot be removed: install once
        _hook_installed = True
    previous, _guarding_pid = _guarding_pid, os.getpid()
    try:
        yield
    finally:
        _guarding_pid = previous
