"""Small SVG charts of an episode's evidence, drawn on the server.

No chart library and no script: a shop-floor tablet gets a few hundred bytes of SVG that
render at once and print well. The evidence shape this module reads (the rules engine
writes it into ``Episode.evidence``)::

    {"series": [{"name": "cycle_time", "unit": "s",
                 "points": [[1718000000.0, 41.8], [1718000060.0, 42.1], ...],
                 "baseline": 42.0, "warning": 50, "limit": 60}],
     ...other facts...}

``series`` may also be a single object instead of a list. ``points`` are ``[time, value]``
pairs, time in Unix seconds (or ISO 8601 text); ``baseline``, ``warning`` and ``limit``
are optional reference lines (cycle time against its baseline, tool counter against tool
life, spindle load against its limit). Other keys are shown beside the chart as facts
(scalars, and the scalars of one nested object such as ``values`` or ``machine_state``).
Anything unreadable is skipped, never an error: evidence is best effort.

What a chart shows, so that it explains the episode without the facts beside it: a time
axis in plant time (``HH:MM`` ticks at a round step), the value axis with the unit, the
reference lines (a ``baseline`` with a ``band`` of ± that much shaded when given), the
evidence window (``window.first_ts`` to ``window.last_ts``) shaded, and markers
(``markers: [{"ts": ..., "kind": "tool_change" | "pallet_change" | "alarm", "label": ...}]``)
as labelled vertical lines; the machine's state at the episode adds its own: the tools
changed in the two hours before it (``machine_state.tool_changes``), its last pallet
changes (``machine_state.pallet_changes``) and its last alarm
(``machine_state.last_alarm.ts``). Facts are labelled in words with their units, times in plant
time: "Reached 212 parts", not ``values.reached 212.0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from html import escape
from typing import Any

from markupsafe import Markup

WIDTH, HEIGHT = 400, 170
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 48, 10, 12, 38
MAX_POINTS = 400
MAX_SERIES = 3
REFERENCE_LINES = ("baseline", "warning", "limit", "expected", "clear_at")
#: How a reference line is labelled on the chart, where its key is not a word.
REFERENCE_WORDS = {"clear_at": "clears at"}


@dataclass(frozen=True)
class Series:
    """One numeric series of the evidence, cleaned up for drawing."""

    name: str
    unit: str
    points: list[tuple[float, float]]
    references: dict[str, float]
    #: ± around the baseline that counts as normal (shaded), when the rule gives one.
    band: float | None = None
    #: (start, end) of the evidence window, Unix seconds.
    window: tuple[float, float] | None = None
    #: (time, kind, label) of tool changes, pallet changes and alarms.
    markers: list[tuple[float, str, str]] = field(default_factory=list)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _time(value: Any) -> float | None:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            pass
    return _number(value)


def _one_series(raw: Any) -> Series | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("points"), list):
        return None
    points: list[tuple[float, float]] = []
    for item in raw["points"]:
        if isinstance(item, list | tuple) and len(item) == 2:
            t, v = _time(item[0]), _number(item[1])
            if t is not None and v is not None:
                points.append((t, v))
    if not points:
        return None
    # By time only, and stable: a step line's two points at one time keep their order.
    points.sort(key=lambda p: p[0])
    if len(points) > MAX_POINTS:
        stride = math.ceil(len(points) / MAX_POINTS)
        points = points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])
    refs = {k: n for k in REFERENCE_LINES if (n := _number(raw.get(k))) is not None}
    band = _number(raw.get("band"))
    return Series(
        name=str(raw.get("name", "value"))[:64],
        unit=str(raw.get("unit", ""))[:16],
        points=points,
        references=refs,
        band=abs(band) if band is not None and "baseline" in refs else None,
    )


MARKER_KINDS = ("tool_change", "pallet_change", "alarm")


def _state_markers(state: Any) -> list[tuple[float, str, str]]:
    if not isinstance(state, dict):
        return []
    out = []
    changes = state.get("tool_changes")
    if isinstance(changes, dict):
        for tool, ts in list(changes.items())[:10]:
            t = _time(ts)
            if t is not None:
                out.append((t, "tool_change", f"{str(tool)[:16]} changed"))
    pallets = state.get("pallet_changes")
    if isinstance(pallets, list):
        for item in pallets[:10]:
            t = _time(item.get("ts")) if isinstance(item, dict) else None
            if t is not None:
                out.append((t, "pallet_change", f"pallet {str(item.get('pallet', ''))[:16]} in"))
    alarm = state.get("last_alarm")
    if isinstance(alarm, dict):
        t = _time(alarm.get("ts"))
        if t is not None:
            out.append((t, "alarm", f"alarm {str(alarm.get('code', ''))[:16]}"))
    return out


def _window(evidence: dict[str, Any]) -> tuple[float, float] | None:
    window = evidence.get("window")
    if not isinstance(window, dict):
        return None
    first, last = _time(window.get("first_ts")), _time(window.get("last_ts"))
    if first is None or last is None or last < first:
        return None
    return first, last


def _markers(evidence: dict[str, Any]) -> list[tuple[float, str, str]]:
    """Markers given by the rule, and those read off the machine's state at the episode:
    its recent tool changes and its last alarm."""
    out = _state_markers(evidence.get("machine_state"))
    raw = evidence.get("markers")
    if not isinstance(raw, list):
        return out
    for item in raw[:20]:
        if not isinstance(item, dict):
            continue
        t = _time(item.get("ts"))
        kind = str(item.get("kind", ""))
        if t is not None and kind in MARKER_KINDS:
            out.append((t, kind, str(item.get("label", kind.replace("_", " ")))[:32]))
    return out


def evidence_series(evidence: Any) -> list[Series]:
    """The drawable series of an episode's evidence (at most three), each with the
    evidence window and markers of the episode."""
    if not isinstance(evidence, dict):
        return []
    raw = evidence.get("series")
    items = raw if isinstance(raw, list) else [raw]
    found = [s for s in (_one_series(item) for item in items[:MAX_SERIES]) if s is not None]
    window, markers = _window(evidence), _markers(evidence)
    return [Series(s.name, s.unit, s.points, s.references, s.band, window, markers) for s in found]


#: Words for the evidence keys the rules write (others: the key in words).
FACT_LABELS = {
    "reached": "Reached",
    "life": "Tool life",
    "percent_of_life": "Share of tool life",
    "standard_life": "Standard tool life",
    "counter_before_change": "Counter before the change",
    "changed_at": "Changed at",
    "changes": "Changes of this tool",
    "tool": "Tool",
    "pallet": "Pallet",
    "program": "Program",
    "reason": "Reason",
    "expected": "Expected",
    "counter": "Counter",
    "previous": "Previous",
    "baseline_mean_s": "Baseline cycle",
    "baseline_sigma_s": "Baseline spread (sigma)",
    "fastest_cycle_time": "Fastest cycle",
    "increment": "Increment",
}
#: Keys the page shows elsewhere (the episode's own facts) or that mean nothing to a person.
HIDDEN_FACTS = frozenset({"series", "markers", "rule", "type", "subject", "parameters"})
#: Of the machine's state at the time, the facts a person reads.
STATE_FACTS = ("program", "pallet", "run_state")


def _label(key: str) -> tuple[str, str]:
    """(label, unit) of an evidence key: ``baseline_mean_s`` → ("Baseline cycle", "s")."""
    unit = ""
    base = key
    if key.endswith("_ts"):
        base = key[:-3]  # a time: shown in plant time, no unit
    elif key.endswith("_s"):
        unit, base = "s", key[:-2]
    elif "percent" in key or key.endswith("_pct"):
        unit = "%"
    label = FACT_LABELS.get(key) or FACT_LABELS.get(base) or base.replace("_", " ").capitalize()
    return label, unit


def _value(key: str, value: Any, zone: tzinfo) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    number = _number(value) if isinstance(value, int | float) else None
    if number is not None and (key.endswith("_ts") or key.endswith("_at") or key == "ts"):
        return datetime.fromtimestamp(number, UTC).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
    if number is not None:
        text = f"{number:.0f}" if number == int(number) else f"{number:.3g}"
        if abs(number) >= 1000 and number != int(number):
            text = f"{number:.0f}"
        _, unit = _label(key)
        return f"{text}{unit}" if unit == "%" else f"{text} {unit}".strip()
    return str(value)[:128]


def evidence_facts(evidence: Any, zone: tzinfo = UTC, limit: int = 16) -> list[tuple[str, str]]:
    """The evidence as facts a person reads: labelled in words, with units, times in
    plant time (``zone``). The rules engine's ``values`` are the episode's facts; of
    ``machine_state`` the program and pallet; ``window`` is one "Evidence window" fact.
    """
    if not isinstance(evidence, dict):
        return []
    facts: list[tuple[str, str]] = []

    def add(key: str, value: Any) -> None:
        if value is None or isinstance(value, dict | list) or value == "":
            return
        facts.append((_label(key)[0][:64], _value(key, value, zone)))

    for key, value in evidence.items():
        if key in HIDDEN_FACTS:
            continue
        if key == "window":
            window = _window(evidence)
            if window is not None:
                first, last = (datetime.fromtimestamp(t, UTC).astimezone(zone) for t in window)
                fmt = "%H:%M:%S" if first.date() == last.date() else "%a %H:%M"
                facts.append(
                    (
                        "Evidence window",
                        f"{first:%Y-%m-%d} {first.strftime(fmt)} to {last.strftime(fmt)}",
                    )
                )
        elif key == "machine_state" and isinstance(value, dict):
            for name in STATE_FACTS:
                add(name, value.get(name))
        elif isinstance(value, dict):
            for k, v in value.items():
                add(str(k), v)
        else:
            add(str(key), value)
    return facts[:limit]


def _fmt(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 or value == int(value) else f"{value:.3g}"


#: Steps of the time axis, seconds: the first giving at most four ticks is used.
TIME_STEPS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 4 * 3600, 6 * 3600, 12 * 3600, 86400)
#: A series whose times span less than this is not on a clock (e.g. sample numbers).
MIN_CLOCK_SPAN_S = 30.0


def _time_ticks(t0: float, t1: float) -> list[float]:
    span = t1 - t0
    step = next((s for s in TIME_STEPS if span / s <= 4), 7 * 86400)
    first = math.ceil(t0 / step) * step
    return [t for t in (first + i * step for i in range(6)) if t <= t1]


def render_svg(series: Series, zone: tzinfo = UTC) -> Markup:
    """One series as an inline SVG line chart: time axis in plant time (``zone``), value
    axis with the unit, reference lines and band, evidence window, markers."""
    values = [v for _, v in series.points] + list(series.references.values())
    if series.band is not None:
        base = series.references["baseline"]
        values += [base - series.band, base + series.band]
    lo, hi = min(values), max(values)
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    t0, t1 = series.points[0][0], series.points[-1][0]
    if series.window is not None and t1 - t0 >= MIN_CLOCK_SPAN_S:
        # The window may start before the first point kept: the chart spans both.
        t0, t1 = min(t0, series.window[0]), max(t1, series.window[1])
    span_t = (t1 - t0) or 1.0
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM

    def x(t: float) -> float:
        return PAD_LEFT + (t - t0) / span_t * plot_w

    def y(v: float) -> float:
        return PAD_TOP + (hi - v) / (hi - lo) * plot_h

    name = series.name.replace("_", " ")
    label = escape(f"{name} ({series.unit})" if series.unit else name)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="{label}"><title>{label}</title>',
        f'<rect class="chart-bg" x="{PAD_LEFT}" y="{PAD_TOP}" width="{plot_w}" height="{plot_h}"/>',
        f'<text class="chart-axis" x="{PAD_LEFT - 4}" y="{PAD_TOP + 8}" '
        f'text-anchor="end">{escape(_fmt(hi))}</text>',
        f'<text class="chart-axis" x="{PAD_LEFT - 4}" y="{PAD_TOP + plot_h}" '
        f'text-anchor="end">{escape(_fmt(lo))}</text>',
        f'<text class="chart-axis" x="{PAD_LEFT}" y="{HEIGHT - 4}">{label}</text>',
    ]
    clock = t1 - t0 >= MIN_CLOCK_SPAN_S
    if series.window is not None and clock:
        w0, w1 = (min(max(t, t0), t1) for t in series.window)
        parts.insert(
            2,
            f'<rect class="chart-window" x="{x(w0):.1f}" y="{PAD_TOP}" '
            f'width="{max(x(w1) - x(w0), 2):.1f}" height="{plot_h}"><title>evidence window'
            "</title></rect>",
        )
    if series.band is not None:
        base = series.references["baseline"]
        top, bottom = y(base + series.band), y(base - series.band)
        parts.insert(
            2,
            f'<rect class="chart-band" x="{PAD_LEFT}" y="{top:.1f}" width="{plot_w}" '
            f'height="{bottom - top:.1f}"/>',
        )
    if clock:
        fmt = "%H:%M" if t1 - t0 < 86400 else "%a %H:%M"
        for tick in _time_ticks(t0, t1):
            xx = f"{x(tick):.1f}"
            text = datetime.fromtimestamp(tick, UTC).astimezone(zone).strftime(fmt)
            parts.append(
                f'<line class="chart-grid" x1="{xx}" x2="{xx}" y1="{PAD_TOP}" '
                f'y2="{PAD_TOP + plot_h}"/><text class="chart-axis chart-time" x="{xx}" '
                f'y="{PAD_TOP + plot_h + 14}" text-anchor="middle">{escape(text)}</text>'
            )
    for t, kind, text in series.markers:
        if not t0 <= t <= t1:
            continue
        xx = f"{x(t):.1f}"
        parts.append(
            f'<line class="chart-marker chart-marker-{kind}" x1="{xx}" x2="{xx}" '
            f'y1="{PAD_TOP}" y2="{PAD_TOP + plot_h}"/><text class="chart-marker" x="{xx}" '
            f'y="{PAD_TOP + 10}" dx="3">{escape(text)}</text>'
        )
    for name, value in series.references.items():
        yy = f"{y(value):.1f}"
        parts.append(
            f'<line class="chart-ref chart-{name}" x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" '
            f'y1="{yy}" y2="{yy}"/><text class="chart-axis chart-{name}" '
            f'x="{WIDTH - PAD_RIGHT - 2}" y="{float(yy) - 3:.1f}" text-anchor="end">'
            f"{escape(REFERENCE_WORDS.get(name, name))} {escape(_fmt(value))}</text>"
        )
    coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in series.points)
    parts.append(f'<polyline class="chart-line" points="{coords}"/>')
    last_t, last_v = series.points[-1]
    parts.append(f'<circle class="chart-dot" cx="{x(last_t):.1f}" cy="{y(last_v):.1f}" r="3"/>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated text is escaped above
