"""Episodes carry a chart series (and the machine's markers) that the web boards draw."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from rules.engine import Program
from rules.replay import case_config, read_items, replay, run_case
from rules.types.threshold import RECENT as THRESHOLD_RECENT
from rules.types.tool_life_overrun import RECENT as OVERRUN_RECENT
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


def test_spindle_drift_evidence_charts_the_climb_against_level_and_limit() -> None:
    """Level 40 % (5 samples), EWMA 45 (+5, half the threshold: noted), 52.5 (+12.5: fires)."""
    result = run_case(REPO / "tests" / "rules" / "cases" / "spindle_load_drift")
    (episode,) = result.actual
    evidence = episode["evidence"]
    assert "series" not in evidence["values"]
    series_raw = evidence["series"]
    assert series_raw["baseline"] == 40.0 and series_raw["limit"] == 50.0
    # From the first smoothed load past half the threshold to the one that fired.
    assert [v for _, v in series_raw["points"]] == [45.0, 52.5]
    (series,) = evidence_series(evidence)
    svg = str(render_svg(series))
    assert "baseline 40" in svg and "limit 50" in svg and "spindle load (%)" in svg


def test_spindle_drift_keeps_no_chart_points_for_a_healthy_tool(tmp_path: Path) -> None:
    """Only a tool approaching its limit keeps points: a healthy machine's checkpointed
    state does not grow, and a tool that falls back forgets them."""
    from rules.types.spindle_load_drift import MAX_POINTS as DRIFT_POINTS

    case = tmp_path / "healthy_then_approach"
    case.mkdir()
    shutil.copy(REPO / "tests/rules/cases/spindle_load_drift/config.yaml", case / "config.yaml")
    t0 = 1_699_963_200
    loads = [40.0] * 5 + [41.0] * 200 + [47.0] * 3 + [40.0] * 5 + [46.0] * 300
    rows = [
        {"ts": t0 + i, "machine": "cnc120", "name": "spindle_load", "value": v, "subject": "T1"}
        for i, v in enumerate(loads)
    ]
    (case / "input.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (case / "expected.jsonl").write_text("")
    program = Program(case_config(case), file=str(case / "config.yaml"))
    result = replay(program, read_items(case / "input.jsonl"))
    assert result.ledger.rows() == []  # 46 % stays under the limit of 50 %
    (machine,) = result.engine.machines.values()
    notes = machine.rules.get("spindle_load_drift#series", {})
    # The approach that fell back was forgotten; the standing one is bounded.
    assert list(notes) == ["T1"] and len(notes["T1"]) <= DRIFT_POINTS
    assert notes["T1"][-1][0] == float(t0 + len(loads) - 1)
    assert notes["T1"][0][0] >= t0 + 213  # from the second approach (46 %), not the first


def test_the_chart_marks_the_tool_changes_and_the_alarm_of_the_machine_state(
    tmp_path: Path,
) -> None:
    """cnc120's T2 is changed and an alarm raised while T1's counter climbs; T1's short
    life then fires: its chart marks T2's change and the alarm where they happened."""
    case = tmp_path / "marked"
    case.mkdir()
    shutil.copy(CASE / "config.yaml", case / "config.yaml")
    t0 = 1_699_963_200
    rows: list[dict[str, Any]] = [
        {"ts": t0 + 60 * i, "machine": "cnc120", "name": "tool_life", "value": i, "subject": "T1"}
        for i in range(1, 40)
    ]
    rows += [
        {"ts": t0 + 600, "machine": "cnc120", "name": "tool_life", "value": 300, "subject": "T2"},
        {"ts": t0 + 900, "machine": "cnc120", "name": "tool_life", "value": 0, "subject": "T2"},
        {"ts": t0 + 1200, "machine": "cnc120", "name": "alarm", "value": "1001",
         "attrs": {"text": "Spindle drive fault", "active": "true"}},
        {"ts": t0 + 60 * 40, "machine": "cnc120", "name": "tool_life", "value": 0, "subject": "T1"},
    ]  # fmt: skip
    rows.sort(key=lambda r: r["ts"])
    (case / "input.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (case / "expected.jsonl").write_text("")
    t1 = next(e for e in run_case(case).actual if e["subject"] == "T1")
    state = t1["evidence"]["machine_state"]
    assert state["tool_changes"]["T2"] == float(t0 + 900)
    assert state["last_alarm"]["ts"] == float(t0 + 1200)
    (series,) = evidence_series(t1["evidence"])
    assert (float(t0 + 900), "tool_change", "T2 changed") in series.markers
    assert (float(t0 + 1200), "alarm", "alarm 1001") in series.markers
    svg = str(render_svg(series))
    assert "chart-marker-tool_change" in svg and ">T2 changed</text>" in svg
    assert "chart-marker-alarm" in svg and ">alarm 1001</text>" in svg


def test_counter_jump_evidence_draws_the_jump_over_its_limit() -> None:
    result = run_case(REPO / "tests" / "rules" / "cases" / "counter_jump")
    episode = result.actual[0]
    evidence = episode["evidence"]
    values = evidence["values"]
    assert "series" not in values
    (series,) = evidence_series(evidence)
    assert series.references == {"limit": values["limit"]}
    (t0, before), (t1, after) = series.points
    assert t0 < t1 and before == values["last_same_pallet"] and after == values["counter"]
    assert after > values["limit"]  # the line ends above the dashed limit: the jump
    svg = str(render_svg(series))
    assert f"limit {values['limit']:g}"[:10] in svg


def _case(name: str) -> list[dict[str, Any]]:
    return run_case(REPO / "tests" / "rules" / "cases" / name).actual


def _inputs(name: str) -> list[dict[str, Any]]:
    """The case's signal rows (comments and ticks skipped), times in Unix seconds."""
    rows = []
    for line in (
        (REPO / "tests" / "rules" / "cases" / name / "input.jsonl").read_text().splitlines()
    ):
        if line.strip() and not line.startswith("#"):
            row = json.loads(line)
            if "name" in row:
                row["ts"] = datetime.fromisoformat(row["ts"].replace("Z", "+00:00")).timestamp()
                rows.append(row)
    return rows


def test_alarm_frequency_charts_the_occurrences_counting_up_to_the_limit() -> None:
    (episode, *_) = _case("alarm_frequency")
    series_raw = episode["evidence"]["series"]
    occurrences = episode["evidence"]["values"]["occurrences"]
    # Reference: the alarm's raisings within the window before the one that fired.
    fired = series_raw["points"][-1][0]
    window = episode["evidence"]["values"]["window_s"]
    raised = [
        r["ts"]
        for r in _inputs("alarm_frequency")
        if r["name"] == "alarm"
        and str(r["value"]) == episode["subject"]
        and r.get("attrs", {}).get("active", "true") != "false"
        and fired - window < r["ts"] <= fired
    ]
    assert series_raw["points"] == [[t, float(i)] for i, t in enumerate(raised, start=1)]
    assert series_raw["limit"] == occurrences == len(raised)
    svg = str(render_svg(evidence_series(episode["evidence"])[0]))
    assert f"limit {occurrences}" in svg


def test_micro_stops_are_charted_counting_up_to_the_limit() -> None:
    (episode,) = _case("micro_stop")
    series_raw = episode["evidence"]["series"]
    stops = episode["evidence"]["values"]["stops"]
    assert [v for _, v in series_raw["points"]] == [float(i) for i in range(1, stops + 1)]
    assert series_raw["limit"] == stops
    # Each point is a stop's end: a run_state back to running in the case's input.
    restarts = {r["ts"] for r in _inputs("micro_stop") if r["name"] == "run_state"}
    assert {t for t, _ in series_raw["points"]} <= restarts


def test_scrap_rate_charts_the_bad_share_whose_last_point_fired() -> None:
    (episode,) = _case("scrap_rate")
    evidence = episode["evidence"]
    series_raw = evidence["series"]
    assert series_raw["limit"] == 10.0 and series_raw["unit"] == "%"
    # Reference from the counters: increases (a counter going down is a reset), the share
    # of bad parts since the first increase, at each increase up to the firing one.
    last: dict[str, float] = {}
    good = bad = 0.0
    expected = []
    for r in _inputs("scrap_rate"):
        before, last[r["name"]] = last.get(r["name"]), float(r["value"])
        if before is None or r["value"] <= before:
            continue
        if r["name"] == "part_count_bad":
            bad += r["value"] - before
        else:
            good += r["value"] - before
        expected.append([r["ts"], round(100 * bad / (good + bad), 2)])
        if r["ts"] == series_raw["points"][-1][0] and r["name"] == "part_count_bad":
            break
    assert series_raw["points"] == expected
    assert series_raw["points"][-1][1] == round(100 * evidence["values"]["rate"], 2) > 10.0


def test_counter_rollback_charts_the_reading_it_continues_from_and_the_expected_count() -> None:
    episode = _case("counter_rollback")[0]
    values = episode["evidence"]["values"]
    (series,) = evidence_series(episode["evidence"])
    assert series.references == {"expected": values["expected"]}
    (t0, before), (t1, after) = series.points
    assert t0 < t1 and before == values["last_other_pallet"] and after == values["counter"]
    assert "expected 103" in str(render_svg(series))


def test_downtime_charts_running_then_down_and_marks_the_alarm() -> None:
    (episode,) = _case("downtime")
    evidence = episode["evidence"]
    stopped = evidence["values"]["since_ts"]
    series_raw = evidence["series"]
    started = _inputs("downtime")[1]["ts"]  # executing at 06:00
    # A step line: running from 06:00, down at the stop (both edges at the stop's time).
    assert series_raw["points"] == [[started, 1], [stopped, 1], [stopped, 0]]
    (series,) = evidence_series(evidence)
    assert series.points[-2:] == [(stopped, 1.0), (stopped, 0.0)]  # the edge keeps its order
    assert (stopped, "alarm", "alarm 1001") in series.markers


def test_threshold_charts_the_samples_up_to_the_crossing_against_both_lines() -> None:
    (episode,) = _case("threshold")
    series_raw = episode["evidence"]["series"]
    assert series_raw["limit"] == 90.0 and series_raw["clear_at"] == 80.0
    samples = [[r["ts"], float(r["value"])] for r in _inputs("threshold")]
    crossing = series_raw["points"][-1][0]
    assert series_raw["points"] == [s for s in samples if s[0] <= crossing]
    assert series_raw["points"][-1][1] > 90.0
    svg = str(render_svg(evidence_series(episode["evidence"])[0]))
    assert "limit 90" in svg and "clears at 80" in svg


def test_the_threshold_keeps_a_bounded_number_of_samples(tmp_path: Path) -> None:
    case = tmp_path / "long_threshold"
    case.mkdir()
    shutil.copy(REPO / "tests" / "rules" / "cases" / "threshold" / "config.yaml", case)
    t0 = 1_699_963_200
    rows = [
        {"ts": t0 + i, "machine": "cnc103", "name": "spindle_load", "value": 50 + i % 7}
        for i in range(500)
    ]
    rows += [
        {"ts": t0 + 500 + 10 * i, "machine": "cnc103", "name": "spindle_load", "value": 95}
        for i in range(5)
    ]
    (case / "input.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (case / "expected.jsonl").write_text("")
    (episode,) = run_case(case).actual
    points = episode["evidence"]["series"]["points"]
    assert THRESHOLD_RECENT <= len(points) <= 2 * THRESHOLD_RECENT
    assert points[-1] == [float(t0 + 500), 95.0]  # up to the crossing, the newest kept


def test_the_chart_marks_the_pallet_changes_of_the_machine_state(tmp_path: Path) -> None:
    """Pallet changes before cnc120's short tool life are marked where they happened."""
    case = tmp_path / "pallets"
    case.mkdir()
    shutil.copy(CASE / "config.yaml", case / "config.yaml")
    t0 = 1_699_963_200
    rows: list[dict[str, Any]] = [
        {"ts": t0 + 60 * i, "machine": "cnc120", "name": "tool_life", "value": i, "subject": "T1"}
        for i in range(1, 40)
    ]
    rows += [
        {"ts": t0 + 300 * k + 30, "machine": "cnc120", "name": "pallet_id", "value": 1 + k % 2}
        for k in range(8)
    ]
    rows.append(
        {"ts": t0 + 60 * 40, "machine": "cnc120", "name": "tool_life", "value": 0, "subject": "T1"}
    )
    rows.sort(key=lambda r: r["ts"])
    (case / "input.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (case / "expected.jsonl").write_text("")
    (episode,) = run_case(case).actual
    changes = episode["evidence"]["machine_state"]["pallet_changes"]
    # The first reading sets the pallet (no change); seven changes follow, the last four kept.
    assert changes == [
        {"ts": float(t0 + 300 * k + 30), "pallet": str(1 + k % 2)} for k in range(4, 8)
    ]
    (series,) = evidence_series(episode["evidence"])
    assert (float(t0 + 2130), "pallet_change", "pallet 2 in") in series.markers
    svg = str(render_svg(series))
    assert "chart-marker-pallet_change" in svg and ">pallet 2 in</text>" in svg


def test_tool_life_overrun_charts_the_readings_past_the_life() -> None:
    (episode,) = _case("tool_life_overrun")
    series_raw = episode["evidence"]["series"]
    life = episode["evidence"]["values"]["life"]
    fired = series_raw["points"][-1][0]
    readings = [
        [r["ts"], float(r["value"])]
        for r in _inputs("tool_life_overrun")
        if r["name"] == "tool_life" and r["ts"] <= fired
    ]
    assert series_raw["points"] == readings and series_raw["limit"] == life
    assert series_raw["points"][-1][1] > life


def test_the_overrun_chart_forgets_the_old_life_and_stays_bounded(tmp_path: Path) -> None:
    case = tmp_path / "overrun_twice"
    case.mkdir()
    shutil.copy(REPO / "tests" / "rules" / "cases" / "tool_life_overrun" / "config.yaml", case)
    t0 = 1_699_963_200
    values = [*range(300, 351), 0, *range(1, 30), *range(330, 351)]
    rows = [
        {"ts": t0 + 60 * i, "machine": "cnc120", "name": "tool_life", "value": v, "subject": "T1"}
        for i, v in enumerate(values)
    ]
    (case / "input.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (case / "expected.jsonl").write_text("")
    second = run_case(case).actual[-1]
    points = second["evidence"]["series"]["points"]
    assert len(points) == OVERRUN_RECENT
    assert [v for _, v in points] == [float(v) for v in range(330, 350)]  # this life only


def test_pallet_looped_out_charts_the_pallets_of_the_events_since_the_shift_began() -> None:
    (episode,) = _case("pallet_looped_out")
    evidence = episode["evidence"]
    assert [v for _, v in evidence["series"]["points"]] == [1.0] * 5  # pallet 2 missing
    tool = evidence["values"]["tool"]
    fired = evidence["series"]["points"][-1][0]
    events = [
        [r["ts"], float(r["attrs"]["pallet"])]
        for r in _inputs("pallet_looped_out")
        if r["name"] == "machining_event" and r["subject"] == tool and r["ts"] <= fired
    ]
    assert evidence["series"]["points"] == events[-5:]
    assert evidence["values"]["pallets"] == ["1"] * 5
