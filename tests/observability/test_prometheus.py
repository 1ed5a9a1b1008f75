"""A real Prometheus scraping the real gateway, model server and worker (stack.py): every dashboard panel, every
dashboard variable and every alert's signal returns data; the alerts fire when their conditions are made true; the
request id travels from the client through the gateway's logs to the model server's.

One stack for the module. The tests run in file order and the last ones stop processes (the model server, then the
worker and the gateway) to fire the alerts about them, so keep those last.

Alert rules are the real ones with every ``for:`` shortened to 1 s (support.rules_with_short_for); thresholds and
windows are unchanged. Dashboard variables become ``.*`` and ``$__rate_interval`` 10 s (the test scrapes every
second); queries run as Grafana runs them, over a range (from the first scrape until now).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import pytest

from tests.observability.exposed import gateway_families, modelserver_families, worker_families
from tests.observability.stack import MODEL, Stack, running_stack
from tests.observability.support import (
    alert_rules,
    dashboards,
    ensure_prometheus,
    metric_names,
    panel_queries,
    signal_of,
    substitute,
    variable_queries,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    ensure_prometheus()
    with running_stack(tmp_path_factory.mktemp("observability")) as running:
        yield running


def _has_data(stack: Stack, expr: str) -> bool:
    """True when the range query answers at least one series with a finite value (NaN alone is no data)."""
    result = stack.prometheus.query_range(expr, start=stack.started)
    return any(math.isfinite(float(value)) for series in result for _, value in series["values"])


def test_the_traffic_did_what_it_should(stack: Stack) -> None:
    """The premise of the tests below: successes, client mistakes, overloads, jobs of every outcome."""
    statuses = stack.statuses
    assert statuses.get("detect 200", 0) >= 40 and statuses.get("annotate 200", 0) >= 4, statuses
    assert statuses.get("overload 503", 0) >= 12, statuses
    assert statuses.get("bad-image 400") and statuses.get("classify 422") and statuses.get("unknown-model 404"), (
        statuses
    )
    assert sorted(stack.jobs.values()) == ["failed", "failed", "failed", "failed", "finished"]


def test_every_metric_the_dashboards_and_alerts_read_is_scraped(stack: Stack) -> None:
    """Each metric name in a panel, a variable or an alert has series in Prometheus, scraped from our processes,
    and each family our code defines is exported by the running process."""
    names = set()
    for board in dashboards().values():
        names |= {n for _, expr in panel_queries(board) + variable_queries(board) for n in metric_names(expr)}
    names |= {n for rule in alert_rules() for n in metric_names(rule["expr"])}
    missing = sorted(name for name in names if not stack.prometheus.query(f'count({{__name__="{name}"}})'))
    assert not missing, f"no series in Prometheus for {missing}"

    defined = set(gateway_families()) | set(modelserver_families()) | set(worker_families(stack.redis_url))
    scraped = {
        m["metric"]["__name__"].removesuffix("_total")
        for m in stack.prometheus.query('group by (__name__) ({job=~"spotter-.*"})')
    }
    never_seen = sorted(
        name
        for name in defined
        if name not in scraped and not {f"{name}_bucket", f"{name}_count"} & scraped and not name.endswith("_created")
    )
    # The load attempt counter only moves when a load is retried; the rest must all be live.
    assert set(never_seen) <= {":tensorflow:cc:saved_model:load_attempt_count"}, never_seen


@pytest.mark.parametrize("name", ["serving.json", "modelserver.json", "jobs.json"])
def test_every_dashboard_query_returns_data(stack: Stack, name: str) -> None:
    board = dashboards()[name]
    queries = [(f"panel {where}", expr) for where, expr in panel_queries(board)]
    queries += [(f"variable ${var}", expr) for var, expr in variable_queries(board)]
    empty = [f"{where}: {substitute(expr)}" for where, expr in queries if not _has_data(stack, substitute(expr))]
    assert not empty, f"{name}: queries without data:\n" + "\n".join(empty)


def test_every_alert_signal_returns_data(stack: Stack) -> None:
    """What each alert compares with its threshold exists, so the alert can ever fire."""
    empty = [rule["alert"] for rule in alert_rules() if not _has_data(stack, signal_of(rule["expr"]))]
    assert not empty, f"alert signals without data: {empty}"


def test_errors_overloads_and_failed_jobs_fire_their_alerts(stack: Stack) -> None:
    """12 overloads (503) among about 80 inference requests: more than 5 % 5xx and 1 % overloaded. Three jobs
    failed for the system's reasons; the one refused for its input counts apart."""
    prometheus = stack.prometheus
    for alert, labels in (
        ("SpotterHighErrorRate", {"model": MODEL}),
        ("SpotterRejectingOverload", {"model": MODEL}),
        ("SpotterJobsFailing", {"type": "import"}),
    ):
        prometheus.wait(f"{alert} firing", lambda a=alert, want=labels: prometheus.alert_state(a, **want) == "firing")
    for quiet in ("SpotterModelUnavailable", "SpotterModelServerUnreachable", "SpotterNoWorkerAlive"):
        assert prometheus.alert_state(quiet) is None, quiet
    jobs = prometheus.query('sum by (outcome) (spotter_jobs_total{type="import"})')
    assert {s["metric"]["outcome"]: float(s["value"][1]) for s in jobs if float(s["value"][1])} == {
        "finished": 1.0,
        "rejected": 1.0,
        "failed": 3.0,
    }


def test_request_ids_reach_the_logs_of_gateway_and_model_server(stack: Stack) -> None:
    def lines(log: str) -> list[dict[str, object]]:
        return [json.loads(line) for line in log.splitlines() if line.startswith("{")]

    overload = stack.request_ids["overload"]
    gateway_lines = [line for line in lines(stack.gateway.log()) if line.get("request_id") == overload]
    # Overload is logged as a rate: the first refusal of the burst opens a report that carries its request id.
    assert any(str(line["message"]).startswith("overloaded: ") for line in gateway_lines), stack.gateway.log()[-3000:]
    # The gateway asked the model server about the unknown model with the client's id in the call's metadata.
    asked = stack.request_ids["unknown-model"]
    server_lines = [line for line in lines(stack.modelserver.server.log()) if line.get("request_id") == asked]
    assert any("GetModelStatus failed" in str(line["message"]) for line in server_lines), server_lines


def test_a_stopped_model_server_fires_the_unavailable_alerts(stack: Stack) -> None:
    stack.modelserver.server.stop()
    prometheus = stack.prometheus
    prometheus.wait(
        "SpotterModelUnavailable pending or firing",
        lambda: prometheus.alert_state("SpotterModelUnavailable", model=MODEL) in ("pending", "firing"),
    )
    for alert, labels in (
        ("SpotterModelUnavailable", {"model": MODEL}),
        ("SpotterModelServerUnreachable", {}),
        ("SpotterTargetDown", {"job": "spotter-tfs"}),
    ):
        prometheus.wait(f"{alert} firing", lambda a=alert, want=labels: prometheus.alert_state(a, **want) == "firing")


def test_no_worker_and_no_gateway_fire_their_alerts(stack: Stack) -> None:
    prometheus = stack.prometheus
    stack.worker.stop()
    prometheus.wait("SpotterNoWorkerAlive firing", lambda: prometheus.alert_state("SpotterNoWorkerAlive") == "firing")
    stack.gateway.stop()
    prometheus.wait("SpotterGatewayDown firing", lambda: prometheus.alert_state("SpotterGatewayDown") == "firing")
