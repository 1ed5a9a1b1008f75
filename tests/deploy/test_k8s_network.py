"""The NetworkPolicies let through exactly the traffic Spotter needs, evaluated as Kubernetes evaluates them.

A pod selected by no ingress policy accepts everything; a pod selected by some accepts what one of their rules
allows (a rule allows a peer on a port). Only the gateway reaches TFS and Redis, the worker reaches Redis,
Prometheus (namespace `monitoring`) reaches the metrics ports, and everyone reaches the gateway.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.support import Doc, find, of_kind, pod_labels, selects

NAMESPACE_LABELS = {"kubernetes.io/metadata.name": "spotter"}
MONITORING = {"kubernetes.io/metadata.name": "monitoring"}
STRANGER = {"app.kubernetes.io/name": "someone-else"}


def _port(docs: list[Doc], deployment: str, name: str) -> tuple[str, int]:
    spec = find(docs, "Deployment", deployment)["spec"]["template"]["spec"]
    number = next(p["containerPort"] for c in spec["containers"] for p in c.get("ports", []) if p["name"] == name)
    return name, number


def allowed(
    docs: list[Doc],
    source: dict[str, str],
    target: dict[str, str],
    port: tuple[str, int],
    source_namespace: dict[str, str] = NAMESPACE_LABELS,
) -> bool:
    """Whether a pod labelled ``source`` in ``source_namespace`` may open ``port`` on a pod labelled ``target``."""
    policies = [
        p
        for p in of_kind(docs, "NetworkPolicy")
        if selects(p["spec"]["podSelector"], target) and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
    ]
    if not policies:
        return True
    same_namespace = source_namespace == NAMESPACE_LABELS
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            if rule.get("ports") and not any(p["port"] in port for p in rule["ports"]):
                continue
            if not rule.get("from") or any(
                _peer_matches(peer, source, source_namespace, same_namespace) for peer in rule["from"]
            ):
                return True
    return False


def _peer_matches(peer: dict[str, Any], source: dict[str, str], namespace: dict[str, str], same: bool) -> bool:
    if "ipBlock" in peer:
        return False  # no policy of ours admits by address; if one did, this test should say so
    pods_ok = selects(peer["podSelector"], source) if "podSelector" in peer else True
    if "namespaceSelector" in peer:
        return pods_ok and selects(peer["namespaceSelector"], namespace)
    return same and pods_ok


def test_default_deny(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    deny = find(docs, "NetworkPolicy", "spotter-default-deny-ingress")["spec"]
    assert deny["podSelector"] == {} and deny.get("ingress", []) == []
    assert not allowed(docs, STRANGER, {"app.kubernetes.io/name": "a-future-pod"}, ("http", 8080))


def test_only_the_gateway_reaches_tfs(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    tfs = pod_labels(docs, "spotter-tfs")
    grpc, rest = _port(docs, "spotter-tfs", "grpc"), _port(docs, "spotter-tfs", "rest")
    gateway, worker = pod_labels(docs, "spotter-gateway"), pod_labels(docs, "spotter-worker")
    assert allowed(docs, gateway, tfs, grpc)
    for source in (worker, STRANGER):
        assert not allowed(docs, source, tfs, grpc)
        assert not allowed(docs, source, tfs, rest)
    # Prometheus scrapes TFS's metrics on the REST port, and only that.
    assert allowed(docs, STRANGER, tfs, rest, source_namespace=MONITORING)
    assert not allowed(docs, STRANGER, tfs, grpc, source_namespace=MONITORING)


def test_anyone_reaches_the_gateway(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    gateway = pod_labels(docs, "spotter-gateway")
    for port in ("http", "grpc"):
        assert allowed(docs, STRANGER, gateway, _port(docs, "spotter-gateway", port))


def test_only_prometheus_reaches_the_worker(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    worker = pod_labels(docs, "spotter-worker")
    metrics = _port(docs, "spotter-worker", "metrics")
    assert allowed(docs, STRANGER, worker, metrics, source_namespace=MONITORING)
    assert not allowed(docs, pod_labels(docs, "spotter-gateway"), worker, metrics)


@pytest.mark.parametrize("overlay_name", ["cpu"])
def test_only_the_gateway_and_worker_reach_redis(rendered: dict[str, list[Doc]], overlay_name: str) -> None:
    docs = rendered[overlay_name]
    redis = pod_labels(docs, "spotter-redis")
    port = _port(docs, "spotter-redis", "redis")
    assert allowed(docs, pod_labels(docs, "spotter-gateway"), redis, port)
    assert allowed(docs, pod_labels(docs, "spotter-worker"), redis, port)
    for source in (pod_labels(docs, "spotter-tfs"), STRANGER):
        assert not allowed(docs, source, redis, port)
    assert not allowed(docs, STRANGER, redis, port, source_namespace=MONITORING)
