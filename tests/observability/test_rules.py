"""The Prometheus configuration and alert rules: promtool accepts them, every alert is complete and documented, and
each alert's condition is true on series that should fire it and false on series that should not (promtool's rule
unit tests, on synthetic series: no servers, about a second)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.observability.support import (
    ALERTS_FILE,
    DOC,
    PROMETHEUS_DIR,
    PROMETHEUSRULE_FILE,
    alert_rules,
    ensure_prometheus,
    load_yaml,
    promtool,
    render_prometheusrule,
    rule_groups,
    signal_of,
)

SEVERITIES = {"critical", "warning"}
DURATION = re.compile(r"^[0-9]+[smh]$")


@pytest.fixture(scope="module", autouse=True)
def _promtool() -> None:
    ensure_prometheus()


def test_promtool_accepts_the_rules() -> None:
    done = promtool("check", "rules", str(ALERTS_FILE))
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_accepts_the_compose_config() -> None:
    done = promtool("check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_kubernetes_config_is_valid(tmp_path: Path) -> None:
    """kubernetes.yml, for a Prometheus without the operator. Debian's promtool is built without Kubernetes service
    discovery, so its `kubernetes_sd_configs` are checked here and promtool checks the rest (relabelling, paths)
    with static targets in their place; a promtool that knows Kubernetes checks the file as it is."""
    source = PROMETHEUS_DIR / "kubernetes.yml"
    config = load_yaml(source)
    compose = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    paths = {job["job_name"]: job.get("metrics_path", "/metrics") for job in config["scrape_configs"]}
    assert paths == {job["job_name"]: job.get("metrics_path", "/metrics") for job in compose["scrape_configs"]}
    for job in config["scrape_configs"]:
        [discovery] = job.pop("kubernetes_sd_configs")
        assert discovery == {"role": "endpoints", "namespaces": {"names": ["spotter"]}}, job["job_name"]
        keep = job["relabel_configs"][0]
        assert keep["action"] == "keep" and keep["regex"].startswith(job["job_name"] + ";"), job["job_name"]
        job["static_configs"] = [{"targets": ["127.0.0.1:1"]}]
    shutil.copy(ALERTS_FILE, tmp_path / "alerts.yml")
    (tmp_path / "kubernetes.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    done = promtool("check", "config", str(tmp_path / "kubernetes.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    as_is = promtool("check", "config", str(source))
    if "kubernetes_sd_configs not found" not in as_is.stdout + as_is.stderr:
        assert as_is.returncode == 0, as_is.stdout + as_is.stderr


def test_every_alert_is_complete_and_documented() -> None:
    doc = DOC.read_text()
    anchors = {_anchor(heading) for heading in re.findall(r"^#{2,4} (.+)$", doc, flags=re.MULTILINE)}
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names)), "alert names repeat"
    for rule in alert_rules():
        name = rule["alert"]
        assert DURATION.match(str(rule.get("for", ""))), f"{name}: no for:"
        assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{name}: severity"
        annotations = rule.get("annotations", {})
        assert annotations.get("summary") and annotations.get("description"), f"{name}: summary and description"
        path, _, anchor = annotations.get("runbook_url", "").partition("#")
        assert path == "docs/observability.md" and anchor in anchors, (
            f"{name}: runbook_url {annotations.get('runbook_url')}"
        )
        assert anchor == name.lower(), f"{name}: its runbook section is ### {name}"
        signal_of(rule["expr"])  # raises if the condition has no threshold to compare with


def test_the_prometheusrule_holds_the_same_groups() -> None:
    """deploy/prometheus/prometheusrule.yaml (the operator's form) is generated from alerts.yml."""
    assert PROMETHEUSRULE_FILE.read_text() == render_prometheusrule(), (
        "prometheusrule.yaml is stale: run `python -m tests.observability.support write-prometheusrule`"
    )
    rule = load_yaml(PROMETHEUSRULE_FILE)
    assert rule["kind"] == "PrometheusRule" and rule["spec"]["groups"] == rule_groups()


# -- each alert on synthetic series ------------------------------------------------------------------------------------

GW = 'job="spotter-gateway", instance="gateway:8080"'
DETECT = f'{GW}, endpoint="detect", model="demo", version="1"'
RUNS = 60  # samples, one per 15 s: 15 minutes


def _counter(series: str, per_step: float) -> dict[str, str]:
    return {"series": series, "values": f"0+{per_step}x{RUNS}"}


def _gauge(series: str, value: float) -> dict[str, str]:
    return {"series": series, "values": f"{value}x{RUNS}"}


def _latency(p_fast: float) -> list[dict[str, str]]:
    """Successful detect requests, 100 per step; ``p_fast`` of them under 0.5 s, the rest between 1 and 2.5 s."""
    fast = round(100 * p_fast)
    bucket = f'spotter_request_duration_seconds_bucket{{{DETECT}, status="200", le="%s"}}'
    return [
        _counter(bucket % "0.5", fast),
        _counter(bucket % "1", fast),
        _counter(bucket % "2.5", 100),
        _counter(bucket % "+Inf", 100),
    ]


def _shadow(runs_per_step: float, agreement_per_step: float, version: str = "2") -> list[dict[str, str]]:
    """A shadow version's agreement histogram: ``runs_per_step`` samples whose agreements add up to the other."""
    series = f'{GW}, model="demo", version="{version}"'
    return [
        _counter(f"spotter_shadow_agreement_count{{{series}}}", runs_per_step),
        _counter(f"spotter_shadow_agreement_sum{{{series}}}", agreement_per_step),
    ]


def _requests(ok: float, failed: float, status: str = "503") -> list[dict[str, str]]:
    count = "spotter_request_duration_seconds_count{%s, status=%s}"
    return [_counter(count % (DETECT, '"200"'), ok), _counter(count % (DETECT, f'"{status}"'), failed)]


# alert -> (the labels it fires with, series that fire it, series that must not)
SCENARIOS: dict[str, tuple[dict[str, str], list[dict[str, str]], list[dict[str, str]]]] = {
    "SpotterHighErrorRate": ({"model": "demo"}, _requests(100, 10), _requests(100, 2)),
    "SpotterLatencyHigh": ({"model": "demo", "version": "1"}, _latency(0.5), _latency(0.995)),
    "SpotterBatchQueueNearlyFull": (
        {"instance": "gateway:8080"},
        [
            _gauge(f'spotter_queue_depth{{{GW}, model="demo", version="1"}}', 7),
            _gauge(f"spotter_queue_capacity{{{GW}}}", 8),
        ],
        [
            _gauge(f'spotter_queue_depth{{{GW}, model="demo", version="1"}}', 2),
            _gauge(f"spotter_queue_capacity{{{GW}}}", 8),
        ],
    ),
    "SpotterRejectingOverload": (
        {"model": "demo"},
        [
            *_requests(100, 5),
            _counter(f'spotter_rejected_requests_total{{{GW}, model="demo", reason="overloaded"}}', 5),
        ],
        [
            *_requests(100, 0),
            _counter(f'spotter_rejected_requests_total{{{GW}, model="demo", reason="invalid_input"}}', 5),
        ],
    ),
    "SpotterModelUnavailable": (
        {"model": "demo"},
        [_gauge(f'spotter_model_up{{{GW}, model="demo"}}', 0), _gauge(f'spotter_model_up{{{GW}, model="other"}}', 1)],
        [_gauge(f'spotter_model_up{{{GW}, model="demo"}}', 1)],
    ),
    "SpotterModelServerUnreachable": (
        {"instance": "gateway:8080"},
        [_gauge(f"spotter_model_server_up{{{GW}}}", 0)],
        [_gauge(f"spotter_model_server_up{{{GW}}}", 1)],
    ),
    "SpotterGatewayDown": ({}, [_gauge(f"up{{{GW}}}", 0)], [_gauge(f"up{{{GW}}}", 1)]),
    "SpotterTargetDown": (
        {"job": "spotter-tfs"},
        [_gauge('up{job="spotter-tfs", instance="tfs:8501"}', 0), _gauge(f"up{{{GW}}}", 1)],
        [_gauge('up{job="spotter-tfs", instance="tfs:8501"}', 1)],
    ),
    "SpotterJobsFailing": (
        {"type": "train"},
        [{"series": 'spotter_jobs_total{type="train", outcome="failed"}', "values": f"0x30 1x{RUNS - 30}"}],
        [{"series": 'spotter_jobs_total{type="import", outcome="rejected"}', "values": f"0x30 5x{RUNS - 30}"}],
    ),
    "SpotterNoWorkerAlive": (
        {"queue": "spotter-train"},
        [
            _gauge('spotter_workers_alive{queue="spotter-train"}', 0),
            _gauge('spotter_workers_alive{queue="spotter-data"}', 1),
        ],
        [
            _gauge('spotter_workers_alive{queue="spotter-train"}', 1),
            _gauge('spotter_workers_alive{queue="spotter-data"}', 1),
        ],
    ),
    "SpotterShadowDisagrees": (
        {"model": "demo", "version": "2"},
        [*_shadow(runs_per_step=4, agreement_per_step=2.0), *_shadow(4, 4.0, version="3")],
        [*_shadow(4, 3.8), *_shadow(runs_per_step=0.1, agreement_per_step=0.0, version="3")],  # 3: too few samples
    ),
}
# Alerts that must also fire when their series are missing altogether (no target scraped at all).
FIRE_WHEN_ABSENT = ("SpotterGatewayDown", "SpotterNoWorkerAlive")


def _expr_test(expr: str, series: list[dict[str, str]], labels: dict[str, str] | None) -> dict[str, Any]:
    """A promtool test case: ``count by (<labels>) (expr)`` answers 1 with ``labels``, or nothing when None."""
    by = ", ".join(labels or {})
    counted = f"count by ({by}) ({expr})" if by else f"count({expr})"
    expected = []
    if labels is not None:
        expected = [{"labels": "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}", "value": 1}]
    return {
        "interval": "15s",
        "input_series": series,
        "promql_expr_test": [{"expr": counted, "eval_time": "14m", "exp_samples": expected}],
    }


def test_each_alert_fires_on_its_condition_and_only_then(tmp_path: Path) -> None:
    """The real expressions and thresholds of alerts.yml on synthetic series (their `for:` is checked above)."""
    expressions = {rule["alert"]: " ".join(rule["expr"].split()) for rule in alert_rules()}
    assert set(SCENARIOS) == set(expressions), "every alert needs a scenario here"
    tests = []
    for alert, (labels, firing, quiet) in SCENARIOS.items():
        tests.append(_expr_test(expressions[alert], firing, labels))
        tests.append(_expr_test(expressions[alert], quiet, None))
    unrelated = [_gauge('unrelated_metric{job="x"}', 1)]
    tests += [_expr_test(expressions[alert], unrelated, {}) for alert in FIRE_WHEN_ABSENT]
    unit = {"rule_files": [str(ALERTS_FILE)], "evaluation_interval": "15s", "tests": tests}
    path = tmp_path / "alerts_test.yml"
    path.write_text(yaml.safe_dump(unit, sort_keys=False, width=100_000))
    done = promtool("test", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def _anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")
