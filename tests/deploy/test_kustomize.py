"""Every overlay renders, matches the Kubernetes schemas offline, and every reference in it resolves.

Schemas: kubernetes-validate bundles the OpenAPI-derived JSON schemas of each Kubernetes release, so this runs with
no cluster and no network. We validate strictly (unknown fields are errors) against the oldest release we support
and the newest one bundled. ServiceMonitor and PrometheusRule are CRDs (monitoring.coreos.com/v1) with no bundled
schema; they are checked by what matters to them instead: a ServiceMonitor selects a rendered Service, on a port that
Service has; a PrometheusRule holds named groups of rules with an expression each (tests/observability checks that
its rules are alerts.yml's and that Prometheus accepts them).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from kubernetes_validate.utils import SchemaNotFoundError

from tests.deploy.support import DEPLOY, K8S, REPO, Doc, find, load_yaml, of_kind, selects, workloads

# The oldest Kubernetes the manifests are meant for, and the newest schema kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
# Secrets the operator creates (docs/operations.md, "Secrets"); the repository never holds their values.
EXTERNAL_SECRETS = {"cpu": {"spotter-api-keys"}, "gpu": {"spotter-api-keys", "spotter-redis"}}
SERVICE_MONITOR_ENDPOINT_FIELDS = {"port", "targetPort", "path", "interval", "scrapeTimeout", "scheme", "honorLabels"}


def test_every_resource_matches_the_kubernetes_schemas(overlay: tuple[str, list[Doc]]) -> None:
    name, docs = overlay
    problems = []
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                where = ".".join(str(p) for p in err.path)
                problems.append(f"{doc['kind']}/{doc['metadata']['name']} (k8s {version}) at {where}: {err.message}")
            except SchemaNotFoundError:
                problems.append(f"{doc['kind']} {doc['apiVersion']}: no schema in Kubernetes {version}")
    assert not problems, f"overlay {name}:\n" + "\n".join(problems)


def test_the_schema_check_catches_a_misspelt_field(rendered: dict[str, list[Doc]]) -> None:
    """A strict check, so that the test above means something: an unknown field fails it."""
    deployment = copy.deepcopy(find(rendered["gpu"], "Deployment", "spotter-gateway"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/readyz"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def test_everything_lives_in_the_spotter_namespace(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "spotter", f"{doc['kind']}/{doc['metadata']['name']}"
    namespace = find(docs, "Namespace", "spotter")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_service_monitors_select_a_service_port(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    monitors = of_kind(docs, "ServiceMonitor")
    assert {m["metadata"]["name"] for m in monitors} == {"spotter-gateway", "spotter-tfs", "spotter-worker"}
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        services = [
            s for s in of_kind(docs, "Service") if selects(monitor["spec"]["selector"], s["metadata"]["labels"])
        ]
        assert len(services) == 1, f"{monitor['metadata']['name']} selects {[s['metadata']['name'] for s in services]}"
        ports = {p["name"] for p in services[0]["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert set(endpoint) <= SERVICE_MONITOR_ENDPOINT_FIELDS, (
                f"unknown fields {set(endpoint) - SERVICE_MONITOR_ENDPOINT_FIELDS}"
            )
            assert endpoint["port"] in ports
            assert endpoint["path"].startswith("/")


def _referenced(pod_spec: dict[str, Any], kind: str) -> set[str]:
    """Names of the ConfigMaps, Secrets or PersistentVolumeClaims a pod spec refers to."""
    names = set()
    for volume in pod_spec.get("volumes", []):
        if kind == "ConfigMap" and "configMap" in volume:
            names.add(volume["configMap"]["name"])
        if kind == "Secret" and "secret" in volume:
            names.add(volume["secret"]["secretName"])
        if kind == "PersistentVolumeClaim" and "persistentVolumeClaim" in volume:
            names.add(volume["persistentVolumeClaim"]["claimName"])
        for source in volume.get("projected", {}).get("sources", []):
            if kind == "ConfigMap" and "configMap" in source:
                names.add(source["configMap"]["name"])
            if kind == "Secret" and "secret" in source:
                names.add(source["secret"]["name"])
    for container in pod_spec["containers"] + pod_spec.get("initContainers", []):
        for source in container.get("envFrom", []):
            if kind == "ConfigMap" and "configMapRef" in source:
                names.add(source["configMapRef"]["name"])
            if kind == "Secret" and "secretRef" in source:
                names.add(source["secretRef"]["name"])
        for env in container.get("env", []):
            ref = env.get("valueFrom", {})
            if kind == "ConfigMap" and "configMapKeyRef" in ref:
                names.add(ref["configMapKeyRef"]["name"])
            if kind == "Secret" and "secretKeyRef" in ref:
                names.add(ref["secretKeyRef"]["name"])
    return names


def test_references_resolve(overlay: tuple[str, list[Doc]]) -> None:
    name, docs = overlay
    present = {
        kind: {d["metadata"]["name"] for d in of_kind(docs, kind)}
        for kind in ("ConfigMap", "Secret", "PersistentVolumeClaim", "ServiceAccount")
    }
    for workload, spec in workloads(docs):
        assert _referenced(spec, "ConfigMap") <= present["ConfigMap"], workload
        assert _referenced(spec, "PersistentVolumeClaim") <= present["PersistentVolumeClaim"], workload
        missing = _referenced(spec, "Secret") - present["Secret"]
        assert missing <= EXTERNAL_SECRETS[name], f"{workload} needs Secrets nobody makes: {missing}"
        if "serviceAccountName" in spec:
            assert spec["serviceAccountName"] in present["ServiceAccount"], workload
    # The Secrets the operator must create are the ones the docs tell them to create.
    operations = (REPO / "docs" / "operations.md").read_text()
    for secret in EXTERNAL_SECRETS[name]:
        assert re.search(rf"create secret generic {secret}\b", operations), f"docs/operations.md never creates {secret}"


def test_services_and_budgets_select_pods(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    pods = {
        d["metadata"]["name"]: (d["spec"]["template"]["metadata"]["labels"], d["spec"]["template"]["spec"])
        for d in of_kind(docs, "Deployment")
    }
    for service in of_kind(docs, "Service"):
        chosen = [(labels, spec) for labels, spec in pods.values() if selects(service["spec"]["selector"], labels)]
        assert chosen, f"Service {service['metadata']['name']} selects no pods"
        named_ports = {p["name"] for _, spec in chosen for c in spec["containers"] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            assert isinstance(target, int) or target in named_ports, f"{service['metadata']['name']}: {target}"
    for budget in of_kind(docs, "PodDisruptionBudget"):
        assert any(selects(budget["spec"]["selector"], labels) for labels, _ in pods.values()), budget["metadata"][
            "name"
        ]
    for scaler in of_kind(docs, "HorizontalPodAutoscaler"):
        target = scaler["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment" and target["name"] in pods


def _listed_dashboards() -> list[str]:
    kustomization = load_yaml(DEPLOY / "kustomization.yaml")
    generator = next(g for g in kustomization["configMapGenerator"] if g["name"] == "spotter-grafana-dashboards")
    return list(generator.get("files", []))


def test_every_grafana_dashboard_becomes_a_configmap(rendered: dict[str, list[Doc]]) -> None:
    """deploy/grafana/dashboards/*.json (observability) are listed in deploy/kustomization.yaml, which kustomize
    needs file by file, so that the cluster gets the same dashboards as compose."""
    folder = DEPLOY / "grafana" / "dashboards"
    on_disk = sorted(str(p.relative_to(DEPLOY)) for p in folder.glob("*.json")) if folder.is_dir() else []
    assert sorted(_listed_dashboards()) == on_disk, (
        "list every dashboard of deploy/grafana/dashboards/ under spotter-grafana-dashboards in "
        "deploy/kustomization.yaml"
    )
    for docs in rendered.values():
        configmap = find(docs, "ConfigMap", "spotter-grafana-dashboards")
        assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert sorted(configmap.get("data", {})) == sorted(Path(f).name for f in on_disk)
        # A ConfigMap holds at most 1 MiB; server-side apply avoids the 256 KiB last-applied annotation.
        assert sum(len(v) for v in configmap.get("data", {}).values()) < 900 * 1024


def test_adapter_rule_serves_the_metric_the_autoscaler_reads(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    scaler = find(docs, "HorizontalPodAutoscaler", "spotter-gateway")
    pods_metrics = {m["pods"]["metric"]["name"] for m in scaler["spec"]["metrics"] if m["type"] == "Pods"}
    adapter = load_yaml(K8S / "addons" / "prometheus-adapter-values.yaml")
    served = {rule["name"]["as"] for rule in adapter["rules"]["custom"]}
    assert pods_metrics and pods_metrics <= served
    # The gateway really exports it (docs/architecture.md lists the metric names).
    architecture = (REPO / "docs" / "architecture.md").read_text()
    for metric in pods_metrics:
        assert f"`{metric}`" in architecture


def test_scrape_jobs_are_named_alike_in_compose_and_kubernetes(overlay: tuple[str, list[Doc]]) -> None:
    """The Prometheus operator names a ServiceMonitor's job after the Service; compose's prometheus.yml (observability)
    uses the same names, so alert rules and dashboards that filter on `job` work on both."""
    prometheus_yml = DEPLOY / "prometheus" / "prometheus.yml"
    _, docs = overlay
    services = of_kind(docs, "Service")
    jobs = set()
    for monitor in of_kind(docs, "ServiceMonitor"):
        assert "jobLabel" not in monitor["spec"]
        jobs |= {
            s["metadata"]["name"] for s in services if selects(monitor["spec"]["selector"], s["metadata"]["labels"])
        }
    compose_jobs = {job["job_name"] for job in load_yaml(prometheus_yml)["scrape_configs"]}
    assert jobs == compose_jobs


def test_alert_rules_come_with_the_overlay(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    rules = of_kind(docs, "PrometheusRule")
    assert len(rules) == 1 and rules[0]["apiVersion"] == "monitoring.coreos.com/v1"
    groups = rules[0]["spec"]["groups"]
    assert groups
    for group in groups:
        assert group["name"] and group["rules"]
        for rule in group["rules"]:
            assert ("alert" in rule) != ("record" in rule) and rule["expr"], rule
