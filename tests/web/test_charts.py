"""Evidence charts: which evidence shapes draw, what the SVG holds, what is skipped."""

from __future__ import annotations

import re

from web.charts import MAX_POINTS, evidence_facts, evidence_series, render_svg


def _coords(svg: str) -> list[tuple[float, float]]:
    points = re.search(r'<polyline class="chart-line" points="([^"]+)"', svg)
    assert points is not None
    return [tuple(map(float, p.split(","))) for p in points.group(1).split()]  # type: ignore[misc]


def test_cycle_times_against_a_baseline_draw_a_line_and_a_reference() -> None:
    evidence = {
        "series": {
            "name": "cycle_time",
            "unit": "s",
            "baseline": 42.0,
            "points": [[1718000000 + 60 * i, 42.0 + i] for i in range(10)],
        },
        "fastest_cycle_time": 41.2,
        "increment": 2,
    }
    [series] = evidence_series(evidence)
    svg = str(render_svg(series))
    assert svg.startswith('<svg class="chart"') and svg.endswith("</svg>")
    assert "<title>cycle_time (s)</title>" in svg
    coords = _coords(svg)
    assert len(coords) == 10
    xs = [x for x, _ in coords]
    ys = [y for _, y in coords]
    assert xs == sorted(xs) and ys == sorted(ys, reverse=True)  # time right, values up
    assert 'class="chart-ref chart-baseline"' in svg and "baseline 42" in svg
    assert evidence_facts(evidence) == [("fastest_cycle_time", "41.2"), ("increment", "2")]


def test_tool_counter_against_tool_life_with_a_list_of_series_and_iso_times() -> None:
    evidence = {
        "series": [
            {
                "name": "tool_counter",
                "limit": 798,
                "warning": 700,
                "points": [["2024-06-10T06:00:00+00:00", 10], ["2024-06-10T07:00:00+00:00", 650]],
            },
            {"name": "spindle_load", "unit": "%", "points": [[1, 40], [2, 90]], "limit": 85},
        ]
    }
    series = evidence_series(evidence)
    assert [s.name for s in series] == ["tool_counter", "spindle_load"]
    svg = str(render_svg(series[0]))
    assert "limit 798" in svg and "warning 700" in svg
    # The limit sits above every point: the line stays below the dashed limit line.
    limit_y = float(re.search(r'chart-limit" x1="\d+" x2="\d+" y1="([\d.]+)"', svg).group(1))  # type: ignore[union-attr]
    assert all(y > limit_y for _, y in _coords(svg))


def test_names_in_evidence_are_escaped() -> None:
    [series] = evidence_series({"series": {"name": "<script>x</script>", "points": [[1, 1]]}})
    svg = str(render_svg(series))
    assert "<script>" not in svg and "&lt;script&gt;" in svg


def test_long_series_are_thinned_but_keep_the_last_point() -> None:
    points = [[i, i % 7] for i in range(5000)]
    [series] = evidence_series({"series": {"name": "x", "points": points}})
    assert len(series.points) <= MAX_POINTS + 1
    assert series.points[-1] == (4999.0, 4999 % 7)


def test_unreadable_evidence_draws_nothing_and_raises_nothing() -> None:
    evidence: object
    for evidence in (
        None,
        [],
        "text",
        {},
        {"series": "x"},
        {"series": {"points": "x"}},
        {"series": {"points": [[1, "NaN"], ["yesterday", 2], [1, True], [1]]}},
        {"series": [{"name": "a"}, 5]},
    ):
        assert evidence_series(evidence) == []
    assert evidence_facts({"series": [], "deep": {"a": {"b": 1}}, "n": 3, "gone": None}) == [
        ("n", "3")
    ]


def test_facts_flatten_the_rules_engines_evidence_one_level() -> None:
    evidence = {
        "rule": "tool_life_short",
        "type": "tool_not_reaching_life",
        "values": {"counter_before_change": 412, "standard_life": 798},
        "machine_state": {"program": "O1234", "pallet": None, "last_alarm": {"code": 1}},
        "window": {"first_ts": 1718000000.0},
    }
    assert evidence_facts(evidence) == [
        ("rule", "tool_life_short"),
        ("type", "tool_not_reaching_life"),
        ("values.counter_before_change", "412"),
        ("values.standard_life", "798"),
        ("machine_state.program", "O1234"),
        ("window.first_ts", "1718000000.0"),
    ]
    assert evidence_series(evidence) == []


def test_a_flat_series_still_has_a_scale() -> None:
    [series] = evidence_series({"series": {"name": "flat", "points": [[1, 5], [2, 5]]}})
    coords = _coords(str(render_svg(series)))
    assert len({y for _, y in coords}) == 1
