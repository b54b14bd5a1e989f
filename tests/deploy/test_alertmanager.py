"""The example Alertmanager configuration, checked and its routes tested by ``amtool``.

``amtool check-config`` validates ``deploy/alertmanager/alertmanager.yml``; ``amtool config
routes test --verify.receivers`` sends every alert of the rendered PrometheusRule (with its
severity and the chart's extra labels) through the routing tree and checks who gets it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.deploy.chart import REPO
from tests.deploy.test_alerts import alerts, rule_spec

CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
AMTOOL = shutil.which("amtool")
#: Who hears of an alert, by severity (critical pages and tells plant IT too).
RECEIVERS = {"critical": "repsys-oncall,repsys-plant-it", "warning": "repsys-plant-it"}

pytestmark = pytest.mark.skipif(
    AMTOOL is None, reason="amtool missing: `make setup` installs prometheus-alertmanager"
)


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert AMTOOL is not None
    return subprocess.run(
        [AMTOOL, *args], capture_output=True, text=True, timeout=60, check=False, cwd=CONFIG.parent
    )


def routes_test(labels: dict[str, str], receivers: str) -> subprocess.CompletedProcess[str]:
    return amtool(
        "config",
        "routes",
        "test",
        f"--config.file={CONFIG}",
        f"--verify.receivers={receivers}",
        *(f"{k}={v}" for k, v in labels.items()),
    )


def test_amtool_checks_the_example_config() -> None:
    done = amtool("check-config", str(CONFIG))
    print(done.stdout, done.stderr)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_reaches_the_receivers_of_its_severity() -> None:
    for rule in alerts(rule_spec()):
        labels = {"alertname": rule["alert"], **rule["labels"], "namespace": "repsys"}
        expected = RECEIVERS[rule["labels"]["severity"]]
        done = routes_test(labels, expected)
        print(f"{rule['alert']:<34} {rule['labels']['severity']:<9} -> {done.stdout.strip()}")
        assert done.returncode == 0, f"{rule['alert']}: {done.stdout}{done.stderr}"


def test_a_wrong_receiver_is_caught_and_other_alerts_are_left_alone() -> None:
    # --verify.receivers really compares: the warning receiver is not the critical one.
    wrong = routes_test({"alertname": "RepsysSchedulerMissing", "severity": "critical"}, "default")
    assert wrong.returncode != 0
    # Alerts that are not RepSys's keep the tree's default receiver.
    other = routes_test({"alertname": "KubePodCrashLooping", "severity": "critical"}, "default")
    assert other.returncode == 0, other.stdout + other.stderr


def _alertnames(matchers: list[str]) -> set[str]:
    names: set[str] = set()
    for m in matchers:
        found = re.fullmatch(r'alertname(=~|=)"([^"]+)"', m)
        if found:
            names.update(found.group(2).split("|"))
    return names


def test_inhibitions_name_alerts_the_chart_has() -> None:
    config: dict[str, Any] = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    known = {r["alert"] for r in alerts(rule_spec())}
    assert config["inhibit_rules"]
    for rule in config["inhibit_rules"]:
        for side in ("source_matchers", "target_matchers"):
            names = _alertnames(rule[side])
            assert names, rule
            assert names <= known, f"{side} names alerts the chart does not have: {names - known}"
