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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any

from markupsafe import Markup

WIDTH, HEIGHT = 320, 120
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 44, 8, 10, 18
MAX_POINTS = 400
MAX_SERIES = 3
REFERENCE_LINES = ("baseline", "warning", "limit")


@dataclass(frozen=True)
class Series:
    """One numeric series of the evidence, cleaned up for drawing."""

    name: str
    unit: str
    points: list[tuple[float, float]]
    references: dict[str, float]


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
    points.sort()
    if len(points) > MAX_POINTS:
        stride = math.ceil(len(points) / MAX_POINTS)
        points = points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])
    refs = {k: n for k in REFERENCE_LINES if (n := _number(raw.get(k))) is not None}
    return Series(
        name=str(raw.get("name", "value"))[:64],
        unit=str(raw.get("unit", ""))[:16],
        points=points,
        references=refs,
    )


def evidence_series(evidence: Any) -> list[Series]:
    """The drawable series of an episode's evidence (at most three)."""
    if not isinstance(evidence, dict):
        return []
    raw = evidence.get("series")
    items = raw if isinstance(raw, list) else [raw]
    found = [s for s in (_one_series(item) for item in items[:MAX_SERIES]) if s is not None]
    return found


def evidence_facts(evidence: Any, limit: int = 16) -> list[tuple[str, str]]:
    """Scalar facts of the evidence (everything but the series), as text pairs.

    One level of nesting is flattened with a dot, so the rules engine's ``values``,
    ``machine_state`` and ``parameters`` objects read ``values.current: 412``.
    """
    if not isinstance(evidence, dict):
        return []
    facts: list[tuple[str, str]] = []
    for key, value in evidence.items():
        if key == "series" or isinstance(value, list):
            continue
        if isinstance(value, dict):
            facts += [
                (f"{key}.{k}"[:64], str(v)[:128])
                for k, v in value.items()
                if v is not None and not isinstance(v, dict | list)
            ]
        elif value is not None:
            facts.append((str(key)[:64], str(value)[:128]))
    return facts[:limit]


def _fmt(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 or value == int(value) else f"{value:.3g}"


def render_svg(series: Series) -> Markup:
    """One series as an inline SVG line chart with its reference lines."""
    values = [v for _, v in series.points] + list(series.references.values())
    lo, hi = min(values), max(values)
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    t0, t1 = series.points[0][0], series.points[-1][0]
    span_t = (t1 - t0) or 1.0
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM

    def x(t: float) -> float:
        return PAD_LEFT + (t - t0) / span_t * plot_w

    def y(v: float) -> float:
        return PAD_TOP + (hi - v) / (hi - lo) * plot_h

    label = escape(f"{series.name} ({series.unit})" if series.unit else series.name)
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
    for name, value in series.references.items():
        yy = f"{y(value):.1f}"
        parts.append(
            f'<line class="chart-ref chart-{name}" x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" '
            f'y1="{yy}" y2="{yy}"/><text class="chart-axis chart-{name}" '
            f'x="{WIDTH - PAD_RIGHT - 2}" y="{float(yy) - 3:.1f}" text-anchor="end">'
            f"{escape(name)} {escape(_fmt(value))}</text>"
        )
    coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in series.points)
    parts.append(f'<polyline class="chart-line" points="{coords}"/>')
    last_t, last_v = series.points[-1]
    parts.append(f'<circle class="chart-dot" cx="{x(last_t):.1f}" cy="{y(last_v):.1f}" r="3"/>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated text is escaped above
