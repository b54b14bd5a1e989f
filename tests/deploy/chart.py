"""Render the Helm chart with the real Helm library, for the chart and monitoring tests.

``helm_python`` embeds Helm itself (no binary, no cluster): ``Chart.load(path).render``
runs the same template engine and values-schema validation as ``helm template``.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "repsys"
CI_FILES = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE = "plant1"
NAMESPACE = "repsys"
#: The smallest values that render: the database URL is required.
BASE = {"database": {"url": "postgresql+psycopg://repsys@db.repsys.svc/repsys"}}


def ci_values(name: str) -> dict[str, Any]:
    """The values of ``ci/<name>-values.yaml``."""
    data = yaml.safe_load((CHART / "ci" / f"{name}-values.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` written onto a copy of ``base``, dicts merged key by key."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def render_files(values: dict[str, Any]) -> dict[str, str]:
    """Template path -> rendered text (NOTES.txt included), as ``helm install`` renders."""
    with helm.Chart.load(CHART) as chart:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders for ``values``."""
    docs: list[dict[str, Any]] = []
    for path, text in sorted(render_files(values).items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


@cache
def _render_ci(name: str) -> str:
    return yaml.safe_dump_all(render(ci_values(name)))


def render_ci(name: str) -> list[dict[str, Any]]:
    """The objects of one ``ci/`` values file (rendered once per session, copied out)."""
    return [d for d in yaml.safe_load_all(_render_ci(name)) if d]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(object name, pod spec) of every Deployment and Job."""
    return [
        (d["metadata"]["name"], d["spec"]["template"]["spec"])
        for d in docs
        if d["kind"] in ("Deployment", "Job")
    ]


def config_file(docs: list[dict[str, Any]], name: str = f"{RELEASE}-repsys-config") -> Any:
    """The RepSys config file the chart wrote into a ConfigMap, parsed."""
    return yaml.safe_load(named(docs, "ConfigMap", name)["data"]["repsys.yaml"])


def helm_error(values: dict[str, Any]) -> str:
    """The message Helm refuses ``values`` with (fails the test when Helm accepts them)."""
    try:
        render_files(values)
    except helm.HelmError as err:
        return str(err)
    raise AssertionError("Helm rendered values it should have refused")
