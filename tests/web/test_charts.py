"""Evidence charts: which evidence shapes draw, what the SVG holds, what is skipped."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo

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
    assert "<title>cycle time (s)</title>" in svg
    coords = _coords(svg)
    assert len(coords) == 10
    xs = [x for x, _ in coords]
    ys = [y for _, y in coords]
    assert xs == sorted(xs) and ys == sorted(ys, reverse=True)  # time right, values up
    assert 'class="chart-ref chart-baseline"' in svg and "baseline 42" in svg
    assert evidence_facts(evidence) == [("Fastest cycle", "41.2"), ("Increment", "2")]


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
        ("N", "3")
    ]


def test_facts_are_labelled_in_words_with_units_and_plant_times() -> None:
    evidence = {
        "rule": "tool_life_short",  # the page shows the rule itself
        "type": "tool_not_reaching_life",
        "values": {
            "counter_before_change": 412,
            "standard_life": 798,
            "percent_of_life": 51.6,
            "baseline_mean_s": 41.234,
            "last_change_ts": 1718000000.0,
        },
        "machine_state": {"program": "O1234", "pallet": None, "last_alarm": {"code": 1}},
        "window": {"first_ts": 1718000000.0, "last_ts": 1718001800.0},
        "parameters": {"min_fraction": 0.8},
    }
    # 1718000000 is 2024-06-10 06:13:20 UTC, 08:13:20 in Berlin (summer time).
    assert evidence_facts(evidence, ZoneInfo("Europe/Berlin")) == [
        ("Counter before the change", "412"),
        ("Standard tool life", "798"),
        ("Share of tool life", "51.6%"),
        ("Baseline cycle", "41.2 s"),
        ("Last change", "2024-06-10 08:13:20"),
        ("Program", "O1234"),
        ("Evidence window", "2024-06-10 08:13:20 to 08:43:20"),
    ]
    assert evidence_series(evidence) == []


def test_charts_have_a_time_axis_in_plant_time_the_window_shaded_and_markers() -> None:
    start = 1718000000.0  # 06:13:20 UTC
    evidence = {
        "series": {
            "name": "spindle_load",
            "unit": "%",
            "baseline": 50,
            "band": 5,
            "points": [[start + 60 * i, 50 + i] for i in range(60)],
        },
        "window": {"first_ts": start + 1800, "last_ts": start + 3540},
        "markers": [
            {"ts": start + 600, "kind": "tool_change", "label": "T1"},
            {"ts": start + 1200, "kind": "alarm", "label": "1001"},
            {"ts": start + 99999, "kind": "alarm"},  # outside the chart: not drawn
            {"ts": start, "kind": "<bad>"},  # unknown kind: not drawn
        ],
    }
    [series] = evidence_series(evidence)
    svg = str(render_svg(series, ZoneInfo("America/Chicago")))  # UTC-5 in June
    ticks = re.findall(r'<text class="chart-axis chart-time"[^>]*>([^<]+)</text>', svg)
    # An hour of data: ticks every 15 min on the plant's clock, inside the span.
    assert ticks == ["01:15", "01:30", "01:45", "02:00"]
    window = re.search(r'<rect class="chart-window" x="([\d.]+)" y="\d+" width="([\d.]+)"', svg)
    assert window is not None
    coords = _coords(svg)
    # The window starts at the 31st point (30 min in) and reaches the last one.
    assert abs(float(window.group(1)) - coords[30][0]) < 0.2
    assert abs(float(window.group(1)) + float(window.group(2)) - coords[-1][0]) < 0.2
    assert 'class="chart-band"' in svg
    markers = re.findall(r'<line class="chart-marker chart-marker-(\w+)"', svg)
    assert markers == ["tool_change", "alarm"]
    assert ">T1</text>" in svg and ">1001</text>" in svg and "&lt;bad&gt;" not in svg


def test_a_flat_series_still_has_a_scale() -> None:
    [series] = evidence_series({"series": {"name": "flat", "points": [[1, 5], [2, 5]]}})
    coords = _coords(str(render_svg(series)))
    assert len({y for _, y in coords}) == 1
