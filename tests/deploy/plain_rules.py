"""The chart's alerts as a plain Prometheus rules file, for a Prometheus without the operator.

``deploy/prometheus/repsys-rules.yaml`` is this render (release ``repsys`` in namespace
``repsys``: jobs ``repsys-<component>``, the chart's default thresholds); ``repsys demo``
loads it into its own Prometheus, and tests/deploy/test_alerts.py fails when it differs
from the chart. Regenerate with ``python -m tests.deploy.plain_rules``.
"""

from __future__ import annotations

import helm_python as helm
import yaml

from tests.deploy.chart import CHART, REPO, of_kind

PLAIN_RULES = REPO / "deploy" / "prometheus" / "repsys-rules.yaml"
HEADER = (
    "# Generated from helm/repsys/templates/prometheusrule.yaml (release repsys, namespace\n"
    "# repsys, default thresholds) by `python -m tests.deploy.plain_rules`: edit the chart.\n"
    "# Scrape each process as job repsys-<component> with the label namespace=repsys.\n"
)


def render_plain_rules() -> str:
    """The rules file text, as committed."""
    values = {
        "database": {"url": "postgresql+psycopg://repsys@db/repsys"},
        "prometheusRule": {"enabled": True},
    }
    with helm.Chart.load(CHART) as chart:
        files = chart.render(values, name="repsys", namespace="repsys", is_install=True)
    docs = [
        d
        for p, t in sorted(files.items())
        if p.endswith(".yaml")
        for d in yaml.safe_load_all(t)
        if d
    ]
    (rule,) = of_kind(docs, "PrometheusRule")
    return HEADER + yaml.safe_dump(rule["spec"], sort_keys=False, width=100)


if __name__ == "__main__":
    PLAIN_RULES.parent.mkdir(parents=True, exist_ok=True)
    PLAIN_RULES.write_text(render_plain_rules(), encoding="utf-8")
    print(f"wrote {PLAIN_RULES.relative_to(REPO)}")
