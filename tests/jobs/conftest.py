"""Fixtures for the jobs API: the gateway app on a temporary data folder and model root, the test Redis, and
datasets described by their manifests (enough for every check made at submit time; no TensorFlow here)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from services.gateway.app import create_app
from services.gateway.config import GatewaySettings
from services.jobs.queues import ALL_QUEUES, get_queue
from services.store.datasets.manifest import (
    ClassCounts,
    ClassEntry,
    Manifest,
    SourceInfo,
    SplitCounts,
    SplitInfo,
    now_iso,
    write_manifest,
)
from tests.support.processes import free_port

KEY = {"X-API-Key": "k1"}


def write_dataset(data_dir: Path, name: str, kind: str, classes: list[str], *, validation: int = 3) -> Path:
    """A dataset version made of its manifest only (submit-time checks read nothing else)."""
    folder = data_dir / "datasets" / name / "1"
    folder.mkdir(parents=True)
    per_class = {c: ClassCounts(images=2, boxes=2 if kind == "detection" else 0) for c in classes}
    manifest = Manifest(
        name=name,
        version=1,
        kind=kind,  # type: ignore[arg-type]
        created=now_iso(),
        source=SourceInfo(format="voc" if kind == "detection" else "folders"),  # type: ignore[arg-type]
        split=SplitInfo(ratios={"train": 0.8, "validation": 0.2}, seed=0),
        classes=[ClassEntry(id=i + 1, name=c) for i, c in enumerate(classes)],
        counts={
            "train": SplitCounts(images=10, per_class=per_class),
            "validation": SplitCounts(images=validation, per_class=per_class),
        },
        files={},
    )
    write_manifest(folder, manifest)
    return folder


def queued(redis_url: str) -> int:
    """Jobs waiting in Spotter's queues (queued or deferred)."""
    with redis.Redis.from_url(redis_url) as connection:
        return sum(
            get_queue(q, connection).count + get_queue(q, connection).deferred_job_registry.count for q in ALL_QUEUES
        )


@pytest.fixture
def settings(tmp_path: Path, redis_url: str) -> GatewaySettings:
    (tmp_path / "models").mkdir()
    return GatewaySettings(
        _env_file=None,
        tfs_grpc=f"127.0.0.1:{free_port()}",  # no model server: the jobs API does not need one
        tfs_deadline_seconds=1.0,
        grpc_port=0,  # a free port: other gateways may hold 50051
        model_root=tmp_path / "models",
        data_dir=tmp_path / "data",
        redis_url=redis_url,
        api_keys="k1",
    )


@pytest.fixture
def client(settings: GatewaySettings) -> Iterator[TestClient]:
    write_dataset(settings.data_dir, "shapes", "detection", ["circle", "square"])
    write_dataset(settings.data_dir, "roads", "classification", ["not-road", "road"])
    write_dataset(settings.data_dir, "novalid", "detection", ["circle"], validation=0)
    with TestClient(create_app(settings)) as test_client:
        yield test_client
