"""Fixtures for the deployment tests: the rendered overlays, rendered once per session."""

from __future__ import annotations

import pytest

from tests.deploy.support import K8S, OVERLAYS, Doc, render


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Doc]]:
    """overlay name -> the documents ``kustomize build k8s/overlays/<name>`` renders."""
    return {overlay: render(K8S / "overlays" / overlay) for overlay in OVERLAYS}


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest, rendered: dict[str, list[Doc]]) -> tuple[str, list[Doc]]:
    """Each overlay in turn: (name, documents)."""
    return request.param, rendered[request.param]
