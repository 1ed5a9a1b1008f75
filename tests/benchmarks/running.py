"""Running a bench as ``make bench`` does: ``python -m benchmarks.<name>`` in its own process, from the repository.

A bench imports TensorFlow (or starts servers that do) in its own process, so the test process stays TensorFlow-free.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_bench(repo: Path, module: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``benchmarks.<module>`` with ``args`` and wait up to ``timeout`` seconds; its output is captured as text
    and a failure is returned, not raised, so the test can show the bench's own logs with it."""
    return subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
