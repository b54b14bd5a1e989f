"""The self-alerts and the dashboard against a running RepSys, in a real Prometheus.

The demo's processes run (simulated plant and Plex, collector, rules, plex-sender, runner,
scheduler, web, on a private Redis and mosquitto); Debian's Prometheus scrapes each of them
every second as the job the chart's ServiceMonitor would name it (``plant1-repsys-<component>``,
namespace ``repsys``), with the chart's PrometheusRule rendered as a plain rules file. Then:

- ``promtool check metrics`` passes on every process's ``/metrics``;
- one undecodable MQTT payload is published, so the dead-letter series exist;
- every metric selector of every alert expression, and every dashboard panel query,
  returns at least one live series, so a renamed or dropped metric fails here. A labelled
  counter nothing has incremented yet (no dead letter in a healthy demo) has no series:
  its family must then at least be declared by the scraped job (Prometheus's target
  metadata), which a renamed metric would not be;
- stopping the simulated plant (SIGSTOP: the MQTT broker stays up, so the collector's
  MQTT source stays connected and receives nothing) fires RepsysCollectorIntakeStalled for
  that source within its threshold plus its ``for``, and resuming clears it; the alert
  goes through a real Alertmanager running ``deploy/alertmanager/alertmanager.yml`` (its
  receivers pointed at a local webhook, no e-mail, no waits) and reaches both the
  on-call and plant IT, as the example's routes say for a critical alert.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import paho.mqtt.publish as publish
import promql_parser
import pytest
import yaml

from repsys.cli import COMMAND_MODULES
from repsys.demo import Demo
from repsys.servers import AlertmanagerServer, PrometheusServer, free_port, wait_until
from tests.deploy.chart import NAMESPACE, RELEASE, REPO, ci_values, merge, of_kind, render
from tests.deploy.test_monitoring import dashboard_exprs, grafana_to_promql

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("prometheus") is None
        or shutil.which("promtool") is None
        or shutil.which("prometheus-alertmanager") is None,
        reason="prometheus missing: `make setup` installs Debian's prometheus and alertmanager",
    ),
]

#: The demo's processes that are RepSys components (the simulators are not scraped).
COMPONENTS = ("collector", "rules", "plex-sender", "runner", "scheduler", "web")
#: Short enough to see the stall alert fire in seconds; the other thresholds are the chart's.
STALL_S = 5
STALL_FOR_S = 5


class Webhook:
    """Collects the notifications Alertmanager posts, by path (the receiver)."""

    def __init__(self) -> None:
        received: list[tuple[str, dict[str, Any]]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self, path: str, alertname: str) -> list[dict[str, Any]]:
        return [
            a
            for p, body in list(self.received)
            if p == path
            for a in body["alerts"]
            if a["labels"]["alertname"] == alertname
        ]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def alertmanager_config(webhook: Webhook) -> dict[str, Any]:
    """The example config, its receivers pointed at ``webhook`` and its waits at a second."""
    config: dict[str, Any] = yaml.safe_load(
        (REPO / "deploy" / "alertmanager" / "alertmanager.yml").read_text(encoding="utf-8")
    )
    config["global"] = {"resolve_timeout": "5m"}
    for receiver in config["receivers"]:
        receiver.pop("email_configs", None)
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = webhook.url + "/" + receiver["name"]
    (repsys,) = config["route"]["routes"]
    repsys.update(group_wait="1s", group_interval="1s")
    return config


@dataclass
class Live:
    demo: Demo
    prometheus: PrometheusServer
    #: job -> the /metrics URL it scrapes
    endpoints: dict[str, str]
    rules: list[dict[str, Any]]
    webhook: Webhook

    def query(self, expr: str) -> list[dict[str, Any]]:
        resp = httpx.get(f"{self.prometheus.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = resp.json()
        assert body["status"] == "success", (expr, body)
        result = body["data"]["result"]
        assert isinstance(result, list)
        return result

    def declared(self, metric: str, job: str | None) -> bool:
        """Whether a scraped target (of ``job``) declares the family of ``metric``."""
        names = {metric}
        for suffix in ("_bucket", "_count", "_sum", "_created"):
            if metric.endswith(suffix):
                names.add(metric.removesuffix(suffix))
        match = f'{{job="{job}"}}' if job else '{job=~".+"}'
        for name in names:
            resp = httpx.get(
                f"{self.prometheus.url}/api/v1/targets/metadata",
                params={"metric": name, "match_target": match},
                timeout=10,
            )
            if resp.json().get("data"):
                return True
        return False

    def firing(self, alertname: str) -> list[dict[str, Any]]:
        resp = httpx.get(f"{self.prometheus.url}/api/v1/alerts", timeout=10)
        alerts = resp.json()["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == alertname]


def job_of(component: str) -> str:
    return f"{RELEASE}-repsys-{component}"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("live")
    values = merge(
        ci_values("full"),
        {
            "prometheusRule": {
                "enabled": True,
                "thresholds": {
                    "intakeStalledSeconds": STALL_S,
                    "intakeStalledFor": f"{STALL_FOR_S}s",
                },
            }
        },
    )
    (rule,) = of_kind(render(values), "PrometheusRule")
    rules_file = root / "repsys-rules.yaml"
    rules_file.write_text(yaml.safe_dump(rule["spec"]), encoding="utf-8")
    rules = [r for g in rule["spec"]["groups"] for r in g["rules"]]

    # The demo's own Prometheus (the chart's default thresholds) is not the one tested here.
    demo = Demo(root / "demo", COMMAND_MODULES, web_port=free_port(), prometheus=False)
    prometheus: PrometheusServer | None = None
    webhook = Webhook()
    alertmanager = AlertmanagerServer(root / "alertmanager", alertmanager_config(webhook))
    try:
        alertmanager.start()
        demo.start()
        endpoints = {
            job_of(name): f"http://127.0.0.1:{port}/metrics"
            for name, port in demo.ports.items()
            if name in COMPONENTS
        }
        for url in endpoints.values():
            wait_until(functools.partial(_answers, url), timeout=60, what=url)
        # One payload that does not decode: the dead-letter series exist for real.
        publish.single(
            "focas/cnc101", b"not json", qos=1, hostname="127.0.0.1", port=demo.mosquitto.port
        )
        collector = endpoints[job_of("collector")]
        wait_until(
            lambda: "repsys_collector_dead_letters_total{" in httpx.get(collector, timeout=5).text,
            timeout=30,
            what="the collector's dead letter",
        )
        prometheus = PrometheusServer(
            root / "prometheus",
            {job: [url.split("/")[2]] for job, url in endpoints.items()},
            labels={"namespace": NAMESPACE},
            # As the chart's ServiceMonitor relabels it from the Service.
            job_labels={job_of(c): {"component": c} for c in COMPONENTS},
            rule_files=(rules_file,),
            interval="1s",
            alertmanagers=(f"127.0.0.1:{alertmanager.port}",),
        )
        prometheus.start()
        started = Live(demo, prometheus, endpoints, rules, webhook)
        # Every target scraped, and scraped twice, so rate() has two samples.
        wait_until(
            lambda: (
                len(started.query('count_over_time(up{namespace="repsys"}[1m]) >= 3'))
                == len(endpoints)
                and len(started.query('up{namespace="repsys"} == 1')) == len(endpoints)
            ),
            timeout=30,
            what="every target scraped",
            interval=0.5,
        )
        yield started
    finally:
        if prometheus is not None:
            prometheus.stop()
        demo.stop()
        alertmanager.stop()
        webhook.stop()


def _notified(live: Live, receiver: str) -> bool:
    alerts = live.webhook.alerts(receiver, "RepsysCollectorIntakeStalled")
    return any(a["labels"].get("source") == "broker" for a in alerts)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def selectors(expr: str) -> list[tuple[str, str]]:
    """(metric name, selector without offset) of every vector selector in ``expr``."""
    found: list[tuple[str, str]] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            found.append((node.name, str(node).split(" offset ")[0]))
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return list(dict.fromkeys(found))  # each once, in order


def job_in(selector: str) -> str | None:
    for part in selector.split(","):
        if part.strip().lstrip("{").startswith("job="):
            return part.split('"')[1]
    return None


def test_every_process_passes_promtool_check_metrics(live: Live) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None
    urls = dict(live.endpoints)
    # The simulators' endpoints too: every process the demo starts.
    for name in ("sim-plant", "sim-plex"):
        urls[name] = f"http://127.0.0.1:{live.demo.ports[name]}/metrics"
    for job, url in urls.items():
        text = httpx.get(url, timeout=10).text
        done = subprocess.run(
            [promtool, "check", "metrics"],
            input=text,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        print(f"promtool check metrics {job}: rc={done.returncode} {done.stdout}{done.stderr}")
        assert done.returncode == 0, f"{job}: {done.stdout}{done.stderr}"


def _check_selectors(live: Live, what: str, expr: str, rows: list[str]) -> list[str]:
    """Series count of each selector of ``expr``; the problems found."""
    problems = []
    for name, sel in selectors(expr):
        n = len(live.query(sel))
        if n:
            rows.append(f"{what:<42} {sel[:90]:<90} {n:>4} series")
        elif live.declared(name, job_in(sel)):
            rows.append(f"{what:<42} {sel[:90]:<90}    0 series (declared, none yet)")
        else:
            problems.append(f"{what}: {sel} has no series and no scraped target declares {name}")
    return problems


def test_every_alert_expression_selects_live_metrics(live: Live) -> None:
    rows: list[str] = []
    problems: list[str] = []
    for rule in live.rules:
        # The whole expression must evaluate (firing or not), then each selector in it.
        live.query(rule["expr"])
        problems += _check_selectors(live, rule["alert"], rule["expr"], rows)
    print("\n".join(["", "alert selectors in a live Prometheus:", *rows]))
    assert problems == []
    # Alerts whose every selector has series now (the rest wait for a first failure).
    assert len(rows) >= len(live.rules)


def test_every_dashboard_panel_returns_series(live: Live) -> None:
    rows: list[str] = []
    empty: list[str] = []
    problems: list[str] = []
    for title, expr in dashboard_exprs():
        promql = grafana_to_promql(expr)
        n = len(live.query(promql))
        rows.append(f"panel {title[:40]:<40} {n:>4} series  {promql[:80]}")
        if n == 0:
            empty.append(title)
            # A panel of a counter nothing has counted yet: its metrics must still exist.
            problems += _check_selectors(live, f"panel {title[:34]}", promql, [])
    print("\n".join(["", "dashboard panels in a live Prometheus:", *rows]))
    print(f"panels empty because nothing was counted yet: {empty}")
    assert problems == []


def test_intake_stalled_fires_while_the_source_stays_connected(live: Live) -> None:
    source = '{reader="mqtt", source="broker"}'
    assert live.query(f"repsys_collector_source_connected{source} == 1")
    assert live.firing("RepsysCollectorIntakeStalled") == []
    plant = live.demo.children["sim-plant"]
    os.killpg(plant.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:

        def broker_alert() -> list[dict[str, Any]]:
            return [
                a
                for a in live.firing("RepsysCollectorIntakeStalled")
                if a["labels"]["source"] == "broker" and a["state"] == "firing"
            ]

        # The threshold, then the for, plus a few scrape and evaluation rounds.
        wait_until(
            lambda: bool(broker_alert()),
            timeout=STALL_S + STALL_FOR_S + 15,
            what="RepsysCollectorIntakeStalled firing for the broker",
            interval=0.5,
        )
        took = time.monotonic() - stopped
        (alert,) = broker_alert()
        print(f"\nintake stalled alert firing {took:.1f} s after the plant stopped: {alert}")
        assert took >= STALL_S + STALL_FOR_S - 1
        assert "broker (mqtt)" in alert["annotations"]["summary"]
        # The broker kept the collector connected throughout: the case the alert is for.
        assert live.query(f"repsys_collector_source_connected{source} == 1")
        # Alertmanager routes it, critical, to the on-call and to plant IT.
        for receiver in ("/repsys-oncall", "/repsys-plant-it"):
            wait_until(
                functools.partial(_notified, live, receiver),
                timeout=20,
                what=f"the stalled-intake notification at {receiver}",
                interval=0.5,
            )
        assert live.webhook.alerts("/default", "RepsysCollectorIntakeStalled") == []
    finally:
        os.killpg(plant.pid, signal.SIGCONT)
    wait_until(
        lambda: (
            not [
                a
                for a in live.firing("RepsysCollectorIntakeStalled")
                if a["labels"]["source"] == "broker"
            ]
        ),
        timeout=30,
        what="RepsysCollectorIntakeStalled cleared after the plant resumed",
        interval=0.5,
    )
