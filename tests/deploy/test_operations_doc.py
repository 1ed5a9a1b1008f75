"""docs/operations.md stays true to the files it sends operators to."""

from __future__ import annotations

import re

from tests.deploy.support import REPO

DOC = (REPO / "docs" / "operations.md").read_text()
SECTIONS = (
    "Deploy on one host (Docker Compose)",
    "Deploy on Kubernetes",
    "Secrets",
    "Where models and data live",
    "Scale",
    "Roll out a new model version, and roll back",
    "Dashboards and alerts",
)
# Paths the doc names that live in the repository (models/ and data/ are runtime folders, not files here).
REPO_PATH = re.compile(r"`((?:deploy|k8s|docs|services|requirements|scripts|tests)/[A-Za-z0-9_./*-]+)`")


def test_operations_doc_has_its_sections() -> None:
    headings = set(re.findall(r"^## (.+)$", DOC, flags=re.MULTILINE))
    assert set(SECTIONS) <= headings


def test_every_path_the_doc_names_exists() -> None:
    named = set(REPO_PATH.findall(DOC))
    assert named
    missing = []
    for path in sorted(named):
        if path in {"deploy/.env"}:  # made by the operator, git-ignored by design
            continue
        if "*" in path:
            if not list(REPO.glob(path)):
                missing.append(path)
        elif not (REPO / path).exists():
            missing.append(path)
    assert not missing, f"docs/operations.md names files that do not exist: {missing}"
