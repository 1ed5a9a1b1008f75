"""Helpers for the observability tests: the rule and dashboard files, a real Prometheus, PromQL over HTTP.

    python -m tests.observability.support write-prometheusrule    # regenerate deploy/prometheus/prometheusrule.yaml

TensorFlow-free: Prometheus, the model server, the gateway and the worker are all subprocesses.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.processes import ServerProcess, free_port, start_server

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
GRAFANA_DIR = REPO / "deploy" / "grafana"
DASHBOARD_DIR = GRAFANA_DIR / "dashboards"
ALERTS_FILE = PROMETHEUS_DIR / "alerts.yml"
PROMETHEUSRULE_FILE = PROMETHEUS_DIR / "prometheusrule.yaml"
DOC = REPO / "docs" / "observability.md"

# The comparison with a number that ends an alert's condition (`... > 0.05`, `== 0`, `< 1`).
_THRESHOLD = re.compile(r"\s*(?:>=|<=|==|!=|>|<)\s*(?:bool\s+)?-?[0-9.]+(?:e[+-]?[0-9]+)?(?![\w.])")

# What Grafana puts in a query, and what the tests put instead: every model/version/queue, short windows (the test's
# Prometheus scrapes every second, Grafana's $__rate_interval would be at least four scrape intervals).
GRAFANA_VARIABLES = {
    "$__rate_interval": "10s",
    "$__interval": "2s",
    "$__range": "10m",
    "$model": ".*",
    "$version": ".*",
    "$queue": ".*",
}


# -- rules -------------------------------------------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rule_groups() -> list[dict[str, Any]]:
    """The groups of ``deploy/prometheus/alerts.yml``."""
    return list(load_yaml(ALERTS_FILE)["groups"])


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"] if "alert" in rule]


def rules_with_short_for(for_: str = "1s") -> dict[str, Any]:
    """``alerts.yml`` as it is, but with every ``for:`` set to ``for_``: the test's Prometheus evaluates the real
    expressions and thresholds, and an alert whose condition holds fires within seconds instead of minutes."""
    groups = copy.deepcopy(rule_groups())
    for group in groups:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = for_
    return {"groups": groups}


def signal_of(expr: str) -> str:
    """An alert's expression without its threshold comparisons: the signal a dashboard would show.

    Raises:
        ValueError: the expression compares nothing with a number (every alert must, see alerts.yml's header).
    """
    signal = _THRESHOLD.sub("", expr).strip()
    if signal == expr.strip():
        raise ValueError(f"no threshold comparison in {expr!r}")
    return signal


def prometheusrule() -> dict[str, Any]:
    """The Prometheus operator's PrometheusRule with the groups of ``alerts.yml`` (what prometheusrule.yaml holds)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "spotter",
            "namespace": "spotter",
            "labels": {"app.kubernetes.io/part-of": "spotter", "app.kubernetes.io/name": "spotter-alerts"},
        },
        "spec": {"groups": rule_groups()},
    }


_PROMETHEUSRULE_HEADER = """\
# GENERATED from alerts.yml by `python -m tests.observability.support write-prometheusrule`; do not edit by hand
# (tests/observability/test_rules.py fails when the two differ). For Kubernetes with the Prometheus operator
# (kube-prometheus-stack); deploy/kustomization.yaml puts it in both overlays. The operator loads only the
# PrometheusRules its ruleSelector picks: install kube-prometheus-stack with
# prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues=false, or add its release label here.
"""


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


def render_prometheusrule() -> str:
    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(str, _str_presenter)
    body = yaml.dump(prometheusrule(), Dumper=Dumper, sort_keys=False, width=100_000, allow_unicode=True)
    return _PROMETHEUSRULE_HEADER + body


# -- dashboards --------------------------------------------------------------------------------------------------------


def dashboards() -> dict[str, dict[str, Any]]:
    """File name -> parsed dashboard, for every ``deploy/grafana/dashboards/*.json``."""
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))}


def all_panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def panel_queries(dashboard: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(panel title / refId, expr)`` for every query of every panel."""
    return [
        (f"{panel['title']} / {target.get('refId')}", target["expr"])
        for panel in all_panels(dashboard)
        for target in panel.get("targets", [])
    ]


_LABEL_VALUES = re.compile(r"^label_values\((?:(.*),\s*)?([A-Za-z_][A-Za-z0-9_]*)\)$", re.DOTALL)


def variable_queries(dashboard: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(variable name, PromQL)`` for every query variable: ``label_values(m, l)`` becomes ``count by (l) (m)``."""
    found = []
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        match = _LABEL_VALUES.match(text.strip())
        if match is None:
            raise ValueError(f"variable {variable['name']}: only label_values(metric, label) is supported: {text}")
        metric, label = match.groups()
        selector = metric or '{__name__=~".+"}'
        found.append((variable["name"], f"count by ({label}) ({selector})"))
    return found


def substitute(expr: str, values: Mapping[str, str] = GRAFANA_VARIABLES) -> str:
    """Replace Grafana's variables (longest names first, so ``$__rate_interval`` wins over ``$__range``)."""
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(name, values[name]).replace("${" + name[1:] + "}", values[name])
    return expr


_PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
    "inf", "nan", "atan2", "le",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, keywords, labels and durations left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)  # label lists
    names = set()
    for match in re.finditer(r"(?<![\w:.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", text):
        name, call = match.groups()
        if call or name.lower() in _PROMQL_WORDS:
            continue
        names.add(name)
    return names


# -- a real Prometheus -------------------------------------------------------------------------------------------------


def ensure_prometheus() -> None:
    """``prometheus`` and ``promtool`` on the PATH (``make test`` installs them; so does this, when it may)."""
    if shutil.which("prometheus") and shutil.which("promtool"):
        return
    done = subprocess.run(
        [str(REPO / "scripts" / "ensure-prometheus.sh")], capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0 or not (shutil.which("prometheus") and shutil.which("promtool")):
        raise RuntimeError(f"prometheus is not installed and scripts/ensure-prometheus.sh failed:\n{done.stderr}")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60, check=False)


def local_config(targets: Mapping[str, str], rule_file: Path, interval: str = "1s") -> dict[str, Any]:
    """``deploy/prometheus/prometheus.yml`` with local targets (job name -> ``host:port``), every interval set to
    ``interval`` and the given rule file: the jobs, paths and rules under test are the real ones."""
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    config["global"].update(scrape_interval=interval, evaluation_interval=interval, scrape_timeout=interval)
    config["rule_files"] = [str(rule_file)]
    for job in config["scrape_configs"]:
        job.pop("scrape_interval", None)
        job.pop("scrape_timeout", None)
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    return config


@dataclass
class Prometheus:
    """A Prometheus started by a test, and PromQL through its HTTP API."""

    server: ServerProcess
    url: str

    def api(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10.0)
        body = response.json()
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.api("query", query=expr)["result"])

    def query_range(self, expr: str, start: float, end: float | None = None, step: float = 1.0) -> list[dict[str, Any]]:
        return list(self.api("query_range", query=expr, start=start, end=end or time.time(), step=step)["result"])

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.api("alerts")["alerts"])

    def targets(self) -> list[dict[str, Any]]:
        return list(self.api("targets")["activeTargets"])

    def wait(self, what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
        """Poll ``check`` until it is true; fail loudly with Prometheus's view when it never is."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.5)
        raise AssertionError(
            f"{what}: not within {timeout:.0f}s. Alerts: {json.dumps(self.alerts())[:3000]}\n"
            f"Targets: {[(t['labels'], t['health'], t.get('lastError')) for t in self.targets()]}"
        )

    def alert_state(self, name: str, **labels: str) -> str | None:
        """``firing``, ``pending`` or None for the alert ``name`` whose labels include ``labels``."""
        states = [
            a["state"]
            for a in self.alerts()
            if a["labels"].get("alertname") == name and all(a["labels"].get(k) == v for k, v in labels.items())
        ]
        return "firing" if "firing" in states else (states[0] if states else None)

    def stop(self) -> None:
        self.server.stop()


def start_prometheus(config: Mapping[str, Any], workdir: Path) -> Prometheus:
    """Run ``prometheus`` on a free port with its storage in ``workdir`` (the machine's own service is never used)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_file = workdir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/-/ready", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    server = start_server(
        "prometheus",
        [
            "prometheus",
            f"--config.file={config_file}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
        ],
        log_dir=workdir,
        ready=ready,
        timeout=60,
    )
    return Prometheus(server, url)


def main(argv: list[str]) -> None:
    if argv != ["write-prometheusrule"]:
        raise SystemExit("usage: python -m tests.observability.support write-prometheusrule")
    PROMETHEUSRULE_FILE.write_text(render_prometheusrule())


if __name__ == "__main__":
    main(sys.argv[1:])
