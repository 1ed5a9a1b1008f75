"""Policy check: checkov's Kubernetes and Dockerfile rules pass on every rendered overlay and on the Dockerfiles, but
for the waivers in checkov.yaml.

checkov pins packaging<24 and termcolor<2.4, which clash with requirements/constraints.txt, and brings ~90 packages
nothing else uses, so it gets a virtual env of its own under .venv/tools/, made once (about a minute) from
checkov-constraints.txt and reused after that. It runs offline (--skip-download, no API key).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.deploy.support import DOCKERFILES, TOOLS, Doc, install_aside

HERE = Path(__file__).resolve().parent
CHECKOV_VERSION = "3.3.30"


def checkov() -> list[str]:
    """The command that runs the pinned checkov, installed on first use."""
    venv = TOOLS / f"checkov-{CHECKOV_VERSION}"
    python = venv / "bin" / "python"
    if not (venv / "pyvenv.cfg").exists():
        constraints = HERE / "checkov-constraints.txt"
        # Built aside and renamed into place. A moved venv keeps working through its python (pyvenv.cfg locates
        # site-packages), not through its scripts' shebangs: hence `python -m checkov.main` below.
        install_aside(
            venv,
            [
                "bash", "-c",
                f'"{sys.executable}" -m venv "{{dir}}" && "{{dir}}/bin/pip" install --quiet '
                f'--disable-pip-version-check -c "{constraints}" checkov=={CHECKOV_VERSION}',
            ],
        )  # fmt: skip
    return [str(python), "-m", "checkov.main"]


def test_checkov_passes_on_overlays_and_dockerfiles(rendered: dict[str, list[Doc]], tmp_path: Path) -> None:
    files = []
    for name, docs in rendered.items():
        files.append(tmp_path / f"{name}.yaml")
        files[-1].write_text(yaml.safe_dump_all(docs, sort_keys=False))
    files.extend(DOCKERFILES.values())
    result = subprocess.run(
        [*checkov(), "--config-file", str(HERE / "checkov.yaml"), *(f"--file={f}" for f in files)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"checkov failed:\n{result.stdout}\n{result.stderr}"
    # Both frameworks ran (a file type checkov did not recognise would pass silently).
    assert "kubernetes scan results" in result.stdout and "dockerfile scan results" in result.stdout, result.stdout
