"""The TensorFlow-free layers, checked where it counts: in a fresh interpreter, importing every module of the gateway
(the app, each route, the gRPC server), the clients, the jobs package and the shared modules leaves no TensorFlow or
Keras in ``sys.modules``. A subprocess, so no other test's imports can hide or cause a failure (``make lint``'s
import-linter contracts check the same statically, imports inside functions included)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO

TENSORFLOW = ("tensorflow", "keras", "tensorflow_serving", "tf_keras")
PACKAGES = ("services.gateway", "services.client", "services.jobs", "services.vision", "services.store")
MODULES = (
    "services.gateway.app",
    "services.errors",
    "services.settings",
    "services.grpc_errors",
    "services.model_repository",
    "services.files",
    "services.logs",
)

_PROBE = """
import importlib, json, pkgutil, sys
imported = []
for name in {modules!r}:
    importlib.import_module(name)
    imported.append(name)
for package in {packages!r}:
    root = importlib.import_module(package)
    imported.append(package)
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        importlib.import_module(info.name)
        imported.append(info.name)
print(json.dumps({{"imported": imported, "found": sorted(m for m in {heavy!r} if m in sys.modules)}}))
"""


def probe(modules: tuple[str, ...], packages: tuple[str, ...], heavy: tuple[str, ...]) -> dict[str, list[str]]:
    """Import ``modules`` and every module of ``packages`` in a new interpreter; what was imported, and which of
    ``heavy`` ended up in its ``sys.modules``."""
    code = _PROBE.format(modules=modules, packages=packages, heavy=heavy)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    answer: dict[str, list[str]] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def test_the_gateway_clients_and_jobs_import_no_tensorflow() -> None:
    answer = probe(MODULES, PACKAGES, TENSORFLOW)
    imported = set(answer["imported"])
    # Every route module, the gRPC server and each client were really imported (so the check is not vacuous).
    assert {"services.gateway.api.routes.jobs", "services.gateway.api.routes.datasets"} <= imported
    assert {"services.gateway.api.routes.models", "services.gateway.rpc.server"} <= imported
    assert {"services.client.rest", "services.client.rpc", "services.client.jobs_cli"} <= imported
    assert {"services.jobs.params", "services.jobs.chains", "services.jobs.records", "services.jobs.types"} <= imported
    assert {"services.store.checks", "services.store.pool", "services.store.datasets.validate"} <= imported
    assert answer["found"] == []


def test_the_probe_sees_what_a_module_imports() -> None:
    """The same probe reports a package that is imported (FastAPI, by the app), so an empty answer above means
    TensorFlow really was not there."""
    answer = probe(("services.gateway.app",), (), ("fastapi", "tensorflow"))
    assert answer["found"] == ["fastapi"]
