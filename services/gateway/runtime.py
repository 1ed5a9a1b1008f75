"""Process-wide tuning of a gateway process, applied once at start-up, before the app is built.

- **malloc** (glibc): the gateway's big allocations are short-lived buffers of 0.1 to 10 MB (request bodies,
  canvases, batches and their wire bytes). glibc serves them with ``mmap`` until the first one is freed, then raises
  its mmap threshold to that size, so from then on they come from heaps that are rarely given back, one per thread
  that decodes: RSS creeps up with load and stays. A fixed threshold (``M_MMAP_THRESHOLD``, which turns the dynamic
  one off) keeps them mapped and unmapped at once, and two arenas bound the per-thread heaps. The same knobs as the
  ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_ARENA_MAX`` / ``MALLOC_TRIM_THRESHOLD_`` variables, which win when set.
  Skipped where the C library has no ``mallopt`` (musl).
- **gc**: ``gc.freeze()`` moves the objects of start-up (modules, classes, the app) out of the collector's reach,
  so the full collections that requests trigger do not walk them again each time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os

logger = logging.getLogger(__name__)

# mallopt parameters (glibc's malloc.h) -> (value, the environment variable that sets the same thing).
_MALLOPT = {
    -1: (1024 * 1024, "MALLOC_TRIM_THRESHOLD_"),  # M_TRIM_THRESHOLD: give back heap tops over 1 MiB
    -3: (256 * 1024, "MALLOC_MMAP_THRESHOLD_"),  # M_MMAP_THRESHOLD: blocks from 256 KiB up are mmapped (fixed)
    -8: (2, "MALLOC_ARENA_MAX"),  # M_ARENA_MAX
}


def tune_process() -> None:
    """Apply the malloc settings and freeze the start-up objects (see the module docstring)."""
    _tune_malloc()
    gc.collect()
    gc.freeze()


def _tune_malloc() -> None:
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return  # not glibc
    for param, (value, variable) in _MALLOPT.items():
        if variable in os.environ:
            continue
        if mallopt(ctypes.c_int(param), ctypes.c_int(value)) != 1:
            logger.debug("mallopt(%d, %d) was refused", param, value)
