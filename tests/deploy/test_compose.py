"""The compose files match the Compose Specification and everything they point at exists.

There is no Docker engine here, so `docker compose config` cannot run; the files are validated against the Compose
Specification's JSON schema instead. check-jsonschema (dev extra) ships a copy of it (vendor/compose-spec.json, with
its Apache-2.0 licence alongside), which we load as data and validate with jsonschema. References are checked by
hand: build contexts, Dockerfiles and their targets, build args, bind-mounted files and folders, named volumes, and
the service names the gateway and Prometheus use to reach the others.
"""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import pytest

from tests.deploy.support import (
    COMPOSE_FILES,
    DEPLOY,
    TFS_FILE_FLAGS,
    TFS_FLAGS,
    TFS_REQUIRED_FLAGS,
    flags,
    load_yaml,
    parse_dockerfile,
)

SCHEMA = json.loads(
    (importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text()
)
# Services that run for good (model-seed is a one-shot job).
LONG_RUNNING = {"redis", "tfs", "gateway", "worker", "prometheus", "grafana"}


def compose(name: str = "compose.yaml") -> dict[str, Any]:
    return dict(load_yaml(DEPLOY / name))


def _merged(*names: str) -> dict[str, Any]:
    """Files merged as `docker compose -f a -f b` merges them, for the keys these files use: mappings merge, and
    sequences and scalars of the later file replace the earlier ones."""

    def merge(base: Any, override: Any) -> Any:
        if isinstance(base, dict) and isinstance(override, dict):
            return {k: merge(base[k], v) if k in base else v for k, v in override.items()} | {
                k: v for k, v in base.items() if k not in override
            }
        return override

    result: dict[str, Any] = {}
    for name in names:
        result = merge(result, compose(name))
    return result


def _bind_source(volume: str | dict[str, Any]) -> tuple[str, str, bool] | None:
    """(host path, container path, read-only) of a bind mount; None for a named volume or tmpfs."""
    if isinstance(volume, dict):
        if volume.get("type") != "bind":
            return None
        return volume["source"], volume["target"], bool(volume.get("read_only"))
    source, target, *mode = volume.split(":")
    if not source.startswith((".", "/")):
        return None
    return source, target, "ro" in mode


def _host_path(service: dict[str, Any], container_path: str) -> Path:
    """The file on the host that a container path of ``service`` shows, through its bind mounts."""
    for source, target, _ in filter(None, map(_bind_source, service.get("volumes", []))):
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return DEPLOY / source / container_path[len(target) :].lstrip("/")
    raise AssertionError(f"{container_path} is not on a bind mount")


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_file_matches_the_compose_spec(name: str) -> None:
    errors = sorted(jsonschema.Draft202012Validator(SCHEMA).iter_errors(compose(name)), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_the_schema_catches_a_misspelt_key() -> None:
    broken = compose()
    broken["services"]["gateway"]["helthcheck"] = broken["services"]["gateway"].pop("healthcheck")
    assert list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(broken))


@pytest.mark.parametrize(
    "names", [("compose.yaml",), ("compose.yaml", "compose.gpu.yaml"), ("compose.yaml", "compose.embedded.yaml")]
)
def test_merged_stack_is_valid_and_complete(names: tuple[str, ...]) -> None:
    stack = _merged(*names)
    assert not list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(stack))
    services = stack["services"]
    assert set(services) >= LONG_RUNNING
    for service_name, service in services.items():
        assert "image" in service or "build" in service, service_name
        if service_name in LONG_RUNNING:
            assert service.get("healthcheck", {}).get("test"), f"{service_name} has no healthcheck"
        # The same lock-down as the Kubernetes pods.
        assert service.get("read_only") is True, service_name
        assert service.get("cap_drop") == ["ALL"], service_name
        assert "no-new-privileges:true" in service.get("security_opt", []), service_name
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{service_name} depends on unknown {dependency}"
            if condition["condition"] == "service_healthy":
                assert services[dependency].get("healthcheck"), f"{dependency} has no healthcheck to wait for"


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_build_contexts_dockerfiles_and_mounts_exist(name: str) -> None:
    document = compose(name)
    declared_volumes = set(compose().get("volumes", {}))
    for service_name, service in document["services"].items():
        if "build" in service:
            build = service["build"]
            context = (DEPLOY / build["context"]).resolve()
            assert context.is_dir(), f"{service_name}: no build context {context}"
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            assert dockerfile.is_file(), f"{service_name}: no {dockerfile}"
            parsed = parse_dockerfile(dockerfile)
            if "target" in build:
                parsed.stage(build["target"])
            declared_args = set(parsed.global_args) | {
                text.partition("=")[0] for stage in parsed.stages for text in stage.all("ARG")
            }
            assert set(build.get("args", {})) <= declared_args, f"{service_name}: build args the Dockerfile lacks"
        for volume in service.get("volumes", []):
            bind = _bind_source(volume)
            if bind is None:
                named = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
                assert named in declared_volumes, f"{service_name}: volume {named} is not declared"
            else:
                assert (DEPLOY / bind[0]).exists(), f"{service_name}: {bind[0]} does not exist"


def test_tfs_runs_with_its_config_files() -> None:
    tfs = compose()["services"]["tfs"]
    assert tfs["image"].startswith("tensorflow/serving:")
    assert tfs["entrypoint"] == ["tensorflow_model_server"]
    args = flags(tfs["command"])
    assert set(args) <= TFS_FLAGS, f"unknown TFS flags: {set(args) - TFS_FLAGS}"
    assert TFS_REQUIRED_FLAGS.items() <= args.items()
    for flag in TFS_FILE_FLAGS:
        assert _host_path(tfs, args[flag]).is_file(), f"--{flag}={args[flag]} is not in a mounted folder"
    # TFS only reads models; the model volume is the one the worker writes.
    assert "models:/models:ro" in tfs["volumes"]
    assert "models:/models" in compose()["services"]["worker"]["volumes"]
    gpu = compose("compose.gpu.yaml")["services"]["tfs"]
    assert gpu["image"] == tfs["image"] + "-gpu"


def test_services_reach_each_other_by_compose_name() -> None:
    stack = compose()
    services = stack["services"]
    gateway = services["gateway"]["environment"]
    host, _, port = gateway["SPOTTER_TFS_GRPC"].partition(":")
    assert host in services and f"--port={port}" in services[host]["command"]
    redis = urlparse(gateway["SPOTTER_REDIS_URL"])
    assert redis.hostname in services and redis.port == 6379
    assert services["worker"]["environment"]["SPOTTER_REDIS_URL"] == gateway["SPOTTER_REDIS_URL"]
    assert _host_path(services["gateway"], gateway["SPOTTER_MODEL_CONFIG_FILE"]).is_file()


def test_observability_files_fit_the_mounts() -> None:
    """deploy/prometheus/ and deploy/grafana/ fit the paths this compose file mounts them at and the service names it
    gives the targets (a missing prometheus.yml is a failure, not a skip)."""
    prometheus_yml = DEPLOY / "prometheus" / "prometheus.yml"
    services = compose()["services"]
    config = load_yaml(prometheus_yml)
    targets = [
        target
        for job in config.get("scrape_configs", [])
        for static in job.get("static_configs", [])
        for target in static.get("targets", [])
    ]
    assert targets, "prometheus.yml scrapes nothing"
    for target in targets:
        assert target.partition(":")[0] in services, f"prometheus.yml scrapes {target}, not a compose service"
    for rule_file in config.get("rule_files", []):
        assert list((DEPLOY / "prometheus").glob(rule_file.removeprefix("/etc/prometheus/"))), rule_file
    providers = list((DEPLOY / "grafana" / "provisioning" / "dashboards").glob("*.y*ml"))
    assert providers, "no Grafana dashboard provider in deploy/grafana/provisioning/dashboards/"
    mounted = {target for _, target, _ in filter(None, map(_bind_source, services["grafana"]["volumes"]))}
    for provider_file in providers:
        for provider in load_yaml(provider_file).get("providers", []):
            assert provider["options"]["path"] in mounted, f"{provider_file.name}: {provider['options']['path']}"
