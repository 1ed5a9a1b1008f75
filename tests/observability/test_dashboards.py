"""The Grafana dashboards and provisioning: valid dashboard JSON for a current Grafana, every panel with a unit and a
description, queries that only read metrics Spotter exports. (That every query returns data against the running
processes is checked by test_prometheus.py.)"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.observability.exposed import gateway_families, modelserver_families, sample_names, worker_families
from tests.observability.support import (
    DASHBOARD_DIR,
    DOC,
    GRAFANA_DIR,
    alert_rules,
    all_panels,
    dashboards,
    load_yaml,
    metric_names,
    panel_queries,
    variable_queries,
)

EXPECTED = {"serving.json", "modelserver.json", "jobs.json"}
PANEL_TYPES = {"timeseries", "stat", "heatmap", "bargauge", "gauge", "table"}
# Grafana unit ids (its valueFormats registry) the dashboards may use; a typo would show raw numbers.
GRAFANA_UNITS = {"reqps", "ops", "s", "ms", "µs", "percentunit", "percent", "short", "none", "bytes"}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__range"}
PROMETHEUS_OWN = {"up"}  # made by Prometheus for every target


@pytest.fixture(scope="module")
def boards() -> dict[str, dict[str, Any]]:
    return dashboards()


def test_the_three_dashboards_are_there(boards: dict[str, dict[str, Any]]) -> None:
    assert set(boards) == EXPECTED
    uids = [board["uid"] for board in boards.values()]
    assert len(set(uids)) == len(uids) and all(re.fullmatch(r"[a-z0-9-]{1,40}", uid) for uid in uids)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dashboard_shape(boards: dict[str, dict[str, Any]], name: str) -> None:
    """The keys a current Grafana (schemaVersion 39, Grafana 10/11) needs to provision a dashboard from a file."""
    board = boards[name]
    assert board.get("id") is None, "provisioned dashboards carry no database id"
    assert board["title"].startswith("Spotter / ") and board["description"]
    assert board["schemaVersion"] >= 36 and "spotter" in board["tags"]
    assert {"from", "to"} <= set(board["time"]) and isinstance(board["panels"], list) and board["panels"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, variable["name"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_panel_has_a_unit_a_description_and_queries(boards: dict[str, dict[str, Any]], name: str) -> None:
    board = boards[name]
    ids = [panel["id"] for panel in all_panels(board)]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids), "panel ids must be unique integers"
    cells: set[tuple[int, int]] = set()
    for panel in all_panels(board):
        title = panel.get("title", "")
        assert title and panel["type"] in PANEL_TYPES, f"{name}: {title!r} type {panel.get('type')}"
        assert len(panel.get("description", "")) >= 20, f"{name}: {title}: describe what it shows"
        unit = panel["fieldConfig"]["defaults"].get("unit")
        assert unit in GRAFANA_UNITS, f"{name}: {title}: unit {unit!r}"
        assert panel["datasource"] == DATASOURCE, f"{name}: {title}: datasource by the $datasource variable"
        grid = panel["gridPos"]
        assert grid["w"] >= 1 and grid["h"] >= 1 and grid["x"] + grid["w"] <= 24, f"{name}: {title}: {grid}"
        mine = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & mine, f"{name}: {title} overlaps another panel"
        cells |= mine
        targets = panel["targets"]
        assert targets, f"{name}: {title}: no query"
        ref_ids = [target["refId"] for target in targets]
        assert len(ref_ids) == len(set(ref_ids)), f"{name}: {title}: refIds repeat"
        for target in targets:
            assert target["expr"].strip() and target["datasource"] == DATASOURCE, f"{name}: {title}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_queries_use_only_defined_variables(boards: dict[str, dict[str, Any]], name: str) -> None:
    board = boards[name]
    defined = {v["name"] for v in board["templating"]["list"]} | BUILTIN_VARIABLES
    queries = [expr for _, expr in panel_queries(board)] + [
        v["definition"] for v in board["templating"]["list"] if v["type"] == "query"
    ]
    for expr in queries:
        used = set(re.findall(r"\$\{?(\w+)", expr))
        assert used <= defined, f"{name}: {expr} uses {used - defined}"


def test_queries_read_only_metrics_spotter_exports(boards: dict[str, dict[str, Any]], redis_url: str) -> None:
    """Every metric a panel, a variable or an alert reads is one the gateway, the model server or the worker
    defines (the names are read from their code), or Prometheus's own ``up``."""
    exported = (
        sample_names(gateway_families())
        | sample_names(modelserver_families())
        | sample_names(worker_families(redis_url))
        | PROMETHEUS_OWN
    )
    queries = [(f"{name}: {where}", expr) for name, board in boards.items() for where, expr in panel_queries(board)]
    queries += [(f"{name}: ${var}", expr) for name, board in boards.items() for var, expr in variable_queries(board)]
    queries += [(f"alert {rule['alert']}", rule["expr"]) for rule in alert_rules()]
    unknown = {where: metric_names(expr) - exported for where, expr in queries if metric_names(expr) - exported}
    assert not unknown, unknown
    assert all(metric_names(expr) for _, expr in queries), "a query that reads no metric"


def test_provisioning_points_at_prometheus_and_the_dashboards() -> None:
    [datasource] = load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    assert datasource["isDefault"] is True
    [provider] = load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "spotter.yml")["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == "/etc/grafana/dashboards"
    assert sorted(p.name for p in DASHBOARD_DIR.glob("*.json")) == sorted(EXPECTED)


def test_the_metric_reference_lists_every_metric(redis_url: str) -> None:
    """docs/observability.md's tables name each metric our code defines, and nothing else."""
    documented = set(re.findall(r"^\| `([a-z_:]+)` \|", DOC.read_text(), flags=re.MULTILINE))
    defined = set()
    for found in (gateway_families(), modelserver_families(), worker_families(redis_url)):
        for name, kind in found.items():
            if name.endswith("_created"):
                continue  # prometheus-client's creation timestamps, not metrics of ours
            total = f"{name}_total"
            defined.add(total if kind == "counter" and not name.startswith(":") else name)
    assert documented == defined, f"undocumented: {defined - documented}; not defined: {documented - defined}"
