"""tool_life_short episodes carry a chart series that the web boards draw."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from rules.replay import run_case
from rules.types.tool_life_short import MAX_POINTS
from tests.conftest import REPO
from web.charts import evidence_facts, evidence_series, render_svg

CASE = REPO / "tests" / "rules" / "cases" / "tool_life_short"


def test_tool_life_short_evidence_is_drawn_as_counter_against_life() -> None:
    result = run_case(CASE)
    t1 = next(e for e in result.actual if e["subject"] == "T1")
    evidence = t1["evidence"]
    assert evidence["series"]["limit"] == 348.0
    assert [v for _, v in evidence["series"]["points"]] == [210.0, 211.0, 212.0]
    assert "series" not in evidence["values"]  # lifted, so it is not a fact or ticket text

    (series,) = evidence_series(evidence)
    assert series.name == "tool_counter"
    assert series.references == {"limit": 348.0}
    svg = str(render_svg(series))
    assert "<polyline" in svg
    assert "limit 348" in svg
    assert ("Reached", "212") in evidence_facts(evidence)


def test_the_series_stays_bounded_over_a_long_life(tmp_path: Path) -> None:
    case = tmp_path / "long_life"
    case.mkdir()
    shutil.copy(CASE / "config.yaml", case / "config.yaml")
    t0 = 1_699_963_200
    rows = [
        {"ts": t0 + 60 * i, "machine": "cnc120", "name": "tool_life", "value": i, "subject": "T1"}
        for i in range(1, 301)
    ]
    rows.append({"ts": t0 + 60 * 301, "machine": "cnc120", "name": "tool_life", "value": 0,
                 "subject": "T1"})  # fmt: skip
    (case / "input.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (case / "expected.jsonl").write_text("")

    (episode,) = run_case(case).actual
    points = episode["evidence"]["series"]["points"]
    assert len(points) <= MAX_POINTS
    assert points[0] == [float(t0 + 60), 1.0]  # still spans the whole life
    assert points[-1] == [float(t0 + 60 * 300), 300.0]
    assert [p[0] for p in points] == sorted(p[0] for p in points)


def test_cycle_time_evidence_is_drawn_against_baseline_and_limit() -> None:
    result = run_case(REPO / "tests" / "rules" / "cases" / "cycle_time")
    (episode,) = result.actual
    evidence = episode["evidence"]
    assert evidence["series"]["points"][-2:] == [[1699964040.0, 75.0], [1699964100.0, 75.0]]
    (series,) = evidence_series(evidence)
    assert series.references == {"baseline": 60.0, "limit": 72.0}  # standard 60 x 1.2
    svg = str(render_svg(series))
    assert "<polyline" in svg
    assert "baseline 60" in svg
    assert "limit 72" in svg
