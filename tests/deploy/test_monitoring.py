"""Self-alerts and the Grafana dashboard query only metrics that the code exports.

The metrics are taken from the code itself: every ``<package>/metrics.py`` class is built
on a fresh registry and its families listed with their types, which gives the exact
series names Prometheus will see (``_total``, ``_bucket``...). A grep of the modules' name
literals must agree, so a class this test could not build cannot hide a metric. Every
PromQL expression of the PrometheusRule and of the dashboard is parsed with a real PromQL
parser, and each metric it selects must be among those series.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import promql_parser
import pytest
from prometheus_client import CollectorRegistry

from core.metrics import new_registry
from tests.deploy.chart import CHART, RELEASE, REPO, ci_values, merge, named, of_kind, render

PACKAGES = ["collector", "rules", "plex", "runner", "web"]
DASHBOARD = CHART / "dashboards" / "repsys-plant-overview.json"
#: Series Prometheus makes itself for every target.
BUILTIN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
#: What the plants asked to be alerted on, and the alert that says it.
REQUIRED_ALERTS = {
    "collector offline": "RepsysCollectorOffline",
    "stream lag growing": "RepsysStreamLagGrowing",
    "outbox oldest pending too old": "RepsysOutboxOldestPendingTooOld",
    "dead letters appearing": "RepsysDeadLetters",
    "TB mutex held too long": "RepsysReportMutexHeldTooLong",
    "scheduler missing": "RepsysSchedulerMissing",
    "intake stalled while connected": "RepsysCollectorIntakeStalled",
    "signals buffered in a collector": "RepsysCollectorBuffering",
    "signals dropped by a collector": "RepsysCollectorDroppingSignals",
    "partitions without a lease holder": "RepsysRulesPartitionsUnowned",
    "Plex errors by reason": "RepsysPlexErrors",
    "Plex rate-limit waits": "RepsysPlexRateLimited",
    "report queue not moving": "RepsysReportQueueStalled",
    "notifications failing": "RepsysNotificationsFailing",
    "a process restarting in a loop": "RepsysProcessRestartLoop",
}
_SUFFIXES = {
    "counter": ["_total", "_created"],
    "gauge": [""],
    "histogram": ["_bucket", "_count", "_sum", "_created"],
    "summary": ["", "_count", "_sum", "_created"],
    "info": ["_info"],
    "stateset": [""],
    "enum": [""],
}


@cache
def exported_series() -> frozenset[str]:
    """Every series name the packages' metrics classes export."""
    names: set[str] = set()
    families: set[str] = set()
    for package in PACKAGES:
        module = importlib.import_module(f"{package}.metrics")
        built = 0
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            params = list(inspect.signature(cls.__init__).parameters)
            if params != ["self", "registry"]:
                continue
            registry = CollectorRegistry()
            cls(registry)  # type: ignore[call-arg]  # signature checked just above
            built += 1
            for family in registry.collect():
                families.add(family.name)
                names.update(family.name + s for s in _SUFFIXES[family.type])
        assert built, f"{package}/metrics.py has no metrics class taking a registry"
        # The names written in the module must all be among what the classes registered.
        literals = set(
            re.findall(r'"(repsys_[a-z0-9_]+)"', Path(module.__file__ or "").read_text())
        )
        known = families | names
        assert literals <= known, f"{package}: {literals - known} not registered"
    # Every process's registry also carries the process collector (core.metrics).
    for family in new_registry().collect():
        names.update(family.name + s for s in _SUFFIXES[family.type])
    return frozenset(names)


def selected_metrics(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (it must parse)."""
    found: set[str] = set()

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            found.add(node.name)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def alert_rules() -> list[dict[str, Any]]:
    docs = render(merge(ci_values("full"), {"prometheusRule": {"enabled": True}}))
    (rule,) = of_kind(docs, "PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def dashboard_exprs() -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    ]


def grafana_to_promql(expr: str) -> str:
    """Replace Grafana's variables with values, as Grafana does before it queries."""
    return expr.replace("$__rate_interval", "2m").replace("$namespace", "repsys")


# --- the code's metrics ------------------------------------------------------------------


def test_metrics_are_found_in_every_package() -> None:
    series = exported_series()
    for package in PACKAGES:
        assert any(s.startswith(f"repsys_{package}_") for s in series), package
    # Spot checks of the suffix rules on names the alerts depend on.
    assert "repsys_rules_dead_letters_total" in series
    assert "repsys_runner_run_duration_seconds_bucket" in series
    assert "repsys_plex_outbox_oldest_age_seconds" in series


def test_a_misspelt_metric_would_be_caught() -> None:
    assert selected_metrics('sum(rate(repsys_rules_anomaly_total{state="firing"}[5m]))') == {
        "repsys_rules_anomaly_total"
    }
    assert "repsys_rules_anomaly_total" not in exported_series()
    with pytest.raises(ValueError, match="unclosed left parenthesis"):
        selected_metrics("sum(rate(repsys_rules_anomalies_total[5m])")


# --- the alerts ----------------------------------------------------------------------------


def test_the_required_self_alerts_exist() -> None:
    names = {r["alert"] for r in alert_rules()}
    assert set(REQUIRED_ALERTS.values()) <= names


def test_every_alert_queries_exported_metrics_only() -> None:
    series = exported_series() | BUILTIN
    for rule in alert_rules():
        used = selected_metrics(rule["expr"])
        assert used, rule["alert"]
        assert used <= series, f"{rule['alert']}: {used - series} exported by no package"


def test_every_alert_says_what_and_how_bad() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["labels"]["team"] == "plant-it"  # prometheusRule.alertLabels
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_alerts_follow_the_release_and_its_thresholds() -> None:
    values = merge(
        ci_values("full"),
        {
            "prometheusRule": {
                "thresholds": {"outboxOldestPendingSeconds": 120, "schedulerMissingFor": "9m"}
            }
        },
    )
    docs = render(values)
    rules = {
        r["alert"]: r
        for g in of_kind(docs, "PrometheusRule")[0]["spec"]["groups"]
        for r in g["rules"]
    }
    outbox = rules["RepsysOutboxOldestPendingTooOld"]["expr"]
    assert outbox.endswith("> 120")
    assert f'job="{RELEASE}-repsys-plex-sender"' in outbox
    assert rules["RepsysSchedulerMissing"]["for"] == "9m"


def test_alerts_of_disabled_components_are_left_out() -> None:
    values = merge(ci_values("full"), {"components": {"scheduler": {"enabled": False}}})
    rules = {
        r["alert"]
        for g in of_kind(render(values), "PrometheusRule")[0]["spec"]["groups"]
        for r in g["rules"]
    }
    assert "RepsysSchedulerMissing" not in rules
    assert "RepsysCollectorOffline" in rules


def test_alert_jobs_are_the_service_monitor_jobs() -> None:
    """Prometheus names a ServiceMonitor target's job after its Service."""
    docs = render(ci_values("full"))
    services = {d["metadata"]["name"] for d in of_kind(docs, "Service")}
    for rule in alert_rules():
        for job in re.findall(r'job="([^"]+)"', rule["expr"]):
            assert job in services, f"{rule['alert']}: no Service {job}"


# --- the dashboard -------------------------------------------------------------------------


def test_dashboard_queries_exported_metrics_only() -> None:
    series = exported_series() | BUILTIN
    exprs = dashboard_exprs()
    assert len(exprs) >= 15
    for title, expr in exprs:
        used = selected_metrics(grafana_to_promql(expr))
        assert used, title
        assert used <= series, f"panel {title!r}: {used - series} exported by no package"


def test_dashboard_covers_the_plant_overview() -> None:
    used = set().union(*(selected_metrics(grafana_to_promql(e)) for _, e in dashboard_exprs()))
    # machine flow, signals/s, anomalies, tickets and outbox, report queue
    assert "repsys_collector_signals_written_total" in used
    assert "repsys_rules_anomalies_total" in used
    assert {"repsys_plex_outbox_tickets", "repsys_plex_outbox_oldest_age_seconds"} <= used
    assert "repsys_runner_queue_depth" in used


def test_dashboard_is_well_formed() -> None:
    data = dashboard()
    assert data["uid"] == "repsys-plant-overview"
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in data["templating"]["list"]}
    assert variables == {"datasource", "namespace"}
    for panel in data["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            for target in panel["targets"]:
                assert 'namespace="$namespace"' in target["expr"], panel["title"]


def test_the_chart_ships_the_same_dashboard() -> None:
    docs = render(ci_values("full"))
    cm = named(docs, "ConfigMap", f"{RELEASE}-repsys-dashboard")
    assert json.loads(cm["data"]["repsys-plant-overview.json"]) == dashboard()
    # deploy/grafana/ has it too, for a Grafana without the chart's sidecar.
    plain = REPO / "deploy" / "grafana" / "repsys-plant-overview.json"
    assert plain.resolve() == DASHBOARD.resolve()
