"""The chart's self-alerts, checked and unit-tested by Prometheus's own ``promtool``.

The PrometheusRule is rendered from the chart (release ``plant1``, namespace ``repsys``, the
``ci/full`` values), its ``spec`` written out as a plain rules file, then:

- ``promtool check rules`` on it as rendered;
- ``promtool test rules`` on ``tests/deploy/alerts/repsys_test.yaml``: series in, alerts
  expected out at given times, every alert with at least one firing and one quiet case.
  promtool compares annotations exactly, so the rules it reads keep only the summary (the
  line an on-call sees first, and the one that must name the machine or source); the
  descriptions and runbook links are prose, checked here against docs/RUNBOOK.md.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.chart import REPO, ci_values, merge, of_kind, render
from tests.deploy.plain_rules import PLAIN_RULES, render_plain_rules

ALERT_TESTS = Path(__file__).resolve().parent / "alerts" / "repsys_test.yaml"
RUNBOOK = REPO / "docs" / "RUNBOOK.md"
PROMTOOL = shutil.which("promtool")

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool missing: `make setup` installs Debian's prometheus"
)


def rule_spec() -> dict[str, Any]:
    """The rendered PrometheusRule's spec: a plain Prometheus rules file."""
    docs = render(merge(ci_values("full"), {"prometheusRule": {"enabled": True}}))
    (rule,) = of_kind(docs, "PrometheusRule")
    spec = rule["spec"]
    assert isinstance(spec, dict)
    return spec


def alerts(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for group in spec["groups"] for r in group["rules"] if "alert" in r]


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@needs_promtool
def test_promtool_checks_the_rendered_rules(tmp_path: Path) -> None:
    spec = rule_spec()
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    done = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    print(done.stdout, done.stderr)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alerts(spec))} rules found" in done.stdout


@needs_promtool
def test_promtool_unit_tests_of_every_alert(tmp_path: Path) -> None:
    spec = rule_spec()
    for rule in alerts(spec):
        rule["annotations"] = {"summary": rule["annotations"]["summary"]}
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    shutil.copy(ALERT_TESTS, tmp_path / ALERT_TESTS.name)
    done = promtool("test", "rules", ALERT_TESTS.name, cwd=tmp_path)
    print(done.stdout, done.stderr)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    cases = yaml.safe_load(ALERT_TESTS.read_text(encoding="utf-8"))["tests"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in cases:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {r["alert"] for r in alerts(rule_spec())}
    assert names - firing == set(), "alerts never seen firing"
    assert names - quiet == set(), "alerts never seen quiet"
    assert (firing | quiet) <= names, "tests of alerts the chart does not have"


def test_every_alert_has_for_severity_and_a_summary_naming_its_subject() -> None:
    for rule in alerts(rule_spec()):
        name = rule["alert"]
        assert re.fullmatch(r"[0-9]+[smh]", rule.get("for", "")), name
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        summary = rule["annotations"]["summary"]
        # The machine, source, partition, kind, process... or, for an alert about the
        # whole release, its namespace.
        assert "$labels." in summary or " repsys" in summary, f"{name}: {summary}"


def runbook_sections() -> dict[str, str]:
    """Anchor (GitHub's: the heading in lower case) -> the text of its ``###`` section."""
    text = RUNBOOK.read_text(encoding="utf-8")
    parts = re.split(r"^### (.+)$", text, flags=re.MULTILINE)
    return {
        heading.strip().lower(): body
        for heading, body in zip(parts[1::2], parts[2::2], strict=True)
    }


def test_every_alert_has_a_runbook_section() -> None:
    sections = runbook_sections()
    for rule in alerts(rule_spec()):
        url = rule["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        assert path == "docs/RUNBOOK.md", url  # the chart's default runbookUrl
        assert anchor == rule["alert"].lower()
        assert anchor in sections, f"docs/RUNBOOK.md has no section ### {rule['alert']}"
        body = sections[anchor]
        for part in ("**What it means**", "**What to check**", "**What to do**"):
            assert part in body, f"{rule['alert']}: no {part}"


def test_the_plain_rules_file_is_the_charts() -> None:
    """deploy/prometheus/repsys-rules.yaml (the demo's, and for a Prometheus without the
    operator) is the chart's render; `python -m tests.deploy.plain_rules` rewrites it."""
    assert PLAIN_RULES.read_text(encoding="utf-8") == render_plain_rules()


@needs_promtool
def test_promtool_checks_the_plain_rules_file() -> None:
    done = promtool("check", "rules", str(PLAIN_RULES), cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
