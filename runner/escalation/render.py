"""The escalation report as HTML (the mail body and the stored page), as plain text (the
mail's text part, same content) and as figures (JSON); the ``.xlsx`` is in ``xlsx.py``.

Every time is shown in plant time with its zone; OEE rows carry the planned, downtime,
setup and run minutes and the counts, so a supervisor can check each factor by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from jinja2 import Environment, select_autoescape

from runner.escalation.data import OpenTicket, Recurring, ToolShort
from runner.escalation.oee import OeeRow
from runner.escalation.shift import ShiftWindow


@dataclass(frozen=True)
class EscalationData:
    plant: str
    generated_at: datetime
    window: ShiftWindow
    tickets: list[OpenTicket]
    recurring: list[Recurring]
    tools: list[ToolShort]
    oee: list[OeeRow]
    names: dict[str, str] = field(default_factory=dict)

    @property
    def breached(self) -> list[OpenTicket]:
        return [t for t in self.tickets if t.breached]

    def name(self, machine_id: str) -> str:
        return self.names.get(machine_id) or machine_id

    def when(self, value: datetime) -> str:
        """A time in plant time with its zone: ``2024-11-03 01:30 CST``."""
        return f"{self.window.local(value):%Y-%m-%d %H:%M %Z}"


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f} %"


def minutes(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 60:.0f}"


def min1(value: float | None) -> float | None:
    return None if value is None else round(value / 60, 1)


def count(value: int | None) -> str:
    return "n/a" if value is None else str(value)


def age(hours: float) -> str:
    """``2 d 6 h`` (whole hours; under a day ``5 h``, under an hour ``40 min``)."""
    if hours < 1:
        return f"{round(hours * 60)} min"
    days, rest = divmod(round(hours), 24)
    return f"{days} d {rest} h" if days else f"{rest} h"


def plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


_TEMPLATE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body { font-family: sans-serif; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th { background: #ffff00; font-weight: bold; }
th, td { border: 1px solid #444; padding: 3px 6px; }
tr.breached td { background: #fdd; } td.bad { color: #b00; font-weight: bold; }
td.num { text-align: right; white-space: nowrap; } td.name { white-space: nowrap; }
small { color: #555; } td.note { min-width: 22em; }
</style></head><body>
<h1>{{ title }}</h1>
<p>{{ d.plant }}: shift {{ d.window.name }}, {{ d.when(d.window.start) }} to
{{ d.when(d.window.end) }} ({{ '%g'|format(d.window.hours) }} h);
generated {{ d.when(d.generated_at) }}.
{{ plural(d.tickets|length, 'open ticket') }}, {{ d.breached|length }} past their SLA.</p>
<h2>Open tickets</h2>
<table><tr><th>Machine</th><th>Ticket</th><th>Severity</th><th>State</th><th>Age</th>
<th>SLA (h)</th><th>Escalated to</th><th>Title</th></tr>
{% for t in d.tickets %}
<tr{% if t.breached %} class="breached"{% endif %}><td>{{ d.name(t.machine_id) }}</td>
<td>{{ t.plex_number or t.id }}</td><td>{{ t.severity }}</td><td>{{ t.state }}</td>
<td class="num">{{ age(t.age_hours) }}</td>
<td class="num">{{ '%g'|format(t.sla_hours) }}</td>
<td>{{ t.level_name }}</td><td>{{ t.title }}</td></tr>
{% else %}<tr><td colspan="8">none</td></tr>{% endfor %}</table>
<h2>Recurring episodes</h2>
<table><tr><th>Machine</th><th>Rule</th><th>Subject</th><th>Episodes</th><th>Last</th></tr>
{% for r in d.recurring %}
<tr><td>{{ d.name(r.machine_id) }}</td><td>{{ r.rule }}</td><td>{{ r.subject }}</td>
<td class="num">{{ r.count }}</td><td>{{ d.when(r.last_seen) }}</td></tr>
{% else %}<tr><td colspan="5">none</td></tr>{% endfor %}</table>
<h2>Tools not reaching tool life</h2>
<table><tr><th>Machine</th><th>Changes</th><th>Tools</th><th>Latest</th></tr>
{% for x in d.tools %}<tr><td>{{ d.name(x.machine_id) }}</td><td class="num">{{ x.count }}</td>
<td>{{ x.tools }}</td><td>{{ x.example }}</td></tr>
{% else %}<tr><td colspan="4">none</td></tr>{% endfor %}</table>
<h2>OEE by machine</h2>
<table><tr><th>Machine</th><th>Covered</th><th>Planned (min)</th><th>Downtime (min)</th>
<th>Setup (min)</th><th>Run (min)</th><th>Total</th><th>Good</th><th>Scrap</th>
<th>Ideal cycle (s)</th><th>Availability</th><th>Performance</th><th>Quality</th>
<th>OEE</th><th>Note</th></tr>
{% for o in d.oee %}<tr><td class="name">{{ o.name }}</td>
<td class="num">{{ pct(o.covered_share) }}</td>
<td class="num">{{ minutes(o.planned_s) }}</td><td class="num">{{ minutes(o.downtime_s) }}</td>
<td class="num">{{ minutes(o.setup_s) }}</td><td class="num">{{ minutes(o.run_s) }}</td>
<td class="num">{{ count(o.total) }}</td><td class="num">{{ count(o.good) }}</td>
<td class="num">{{ count(o.scrap) }}</td>
<td class="num">{{ '%g'|format(o.ideal_cycle_s) if o.ideal_cycle_s else 'n/a' }}
<small>{{ o.ideal_source }}</small></td>
<td class="num">{{ pct(o.availability) }}</td>
<td class="num{% if o.impossible %} bad{% endif %}">{{ pct(o.performance) }}</td>
<td class="num">{{ pct(o.quality) }}</td>
<td class="num">{{ pct(o.oee) }}</td><td class="note">{{ o.note }}</td></tr>
{% endfor %}</table>
<p>OEE = availability x performance x quality over planned time (shift minus breaks)
covered by the signals; setup is an availability loss. See runner/README.md.</p>
</body></html>
"""

_ENV = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_ENV.globals.update(pct=pct, minutes=minutes, count=count, age=age, plural=plural)


def title(d: EscalationData) -> str:
    return f"Escalation report - {d.window.name} shift {d.window.local(d.window.end):%m-%d-%Y}"


def render_html(d: EscalationData) -> str:
    return _ENV.from_string(_TEMPLATE).render(d=d, title=title(d))


def render_text(d: EscalationData) -> str:
    """The mail's plain-text part: the same content as the HTML, one line per row."""
    w = d.window
    lines = [
        title(d),
        "",
        f"{d.plant}: shift {w.name}, {d.when(w.start)} to {d.when(w.end)} ({w.hours:g} h); "
        f"generated {d.when(d.generated_at)}.",
        f"{plural(len(d.tickets), 'open ticket')}, {len(d.breached)} past their SLA; "
        f"{plural(len(d.recurring), 'recurring episode')}; "
        f"{plural(len(d.tools), 'machine')} with tools not reaching tool life.",
        "",
        "Open tickets:",
    ]
    lines += [
        f"- {d.name(t.machine_id)}: ticket {t.plex_number or t.id} ({t.severity}), {t.state}, "
        f"open {age(t.age_hours)} (SLA {t.sla_hours:g} h"
        f"{', breached' if t.breached else ''}){', ' + t.level_name if t.level_name else ''}"
        f": {t.title}"
        for t in d.tickets
    ] or ["- none"]
    lines += ["", "Recurring episodes:"]
    lines += [
        f"- {d.name(r.machine_id)}: {r.rule} {r.subject}".rstrip()
        + f", {plural(r.count, 'episode')}, last {d.when(r.last_seen)}"
        for r in d.recurring
    ] or ["- none"]
    lines += ["", "Tools not reaching tool life:"]
    lines += [
        f"- {d.name(x.machine_id)}: {plural(x.count, 'change')} ({x.tools}); {x.example}"
        for x in d.tools
    ] or ["- none"]
    lines += ["", "OEE by machine (minutes; covered share of planned time):"]
    for o in d.oee:
        lines.append(
            f"- {o.name}: OEE {pct(o.oee)} = availability {pct(o.availability)} x "
            f"performance {pct(o.performance)} x quality {pct(o.quality)}; "
            f"covered {pct(o.covered_share)}, planned {minutes(o.planned_s)}, "
            f"downtime {minutes(o.downtime_s)}, setup {minutes(o.setup_s)}, "
            f"run {minutes(o.run_s)}; total {count(o.total)}, good {count(o.good)}, "
            f"scrap {count(o.scrap)}" + (f"; {o.note}" if o.note else "")
        )
    lines += ["", "The full report is attached."]
    return "\n".join(lines) + "\n"


def figures(d: EscalationData) -> dict[str, object]:
    """Every figure of the report as plain JSON values (written beside the HTML, and what
    the golden tests compare): times in plant time with their offset, factors as fractions
    rounded to 4 places, minutes to 0.1."""

    def r4(value: float | None) -> float | None:
        return None if value is None else round(value, 4)

    return {
        "shift": {
            "name": d.window.name,
            "start": d.window.local(d.window.start).isoformat(),
            "end": d.window.local(d.window.end).isoformat(),
            "hours": round(d.window.hours, 4),
        },
        "tickets": [
            {
                "machine": t.machine_id,
                "severity": t.severity,
                "state": t.state,
                "age": age(t.age_hours),
                "sla_hours": t.sla_hours,
                "breached": t.breached,
                "level": t.level_name,
                "title": t.title,
            }
            for t in d.tickets
        ],
        "recurring": [
            {
                "machine": r.machine_id,
                "rule": r.rule,
                "subject": r.subject,
                "count": r.count,
                "last": d.window.local(r.last_seen).isoformat(),
            }
            for r in d.recurring
        ],
        "tools": [{"machine": x.machine_id, "count": x.count, "tools": x.tools} for x in d.tools],
        "oee": {
            o.machine_id: {
                "covered": r4(o.covered_share),
                "planned_min": round(o.planned_s / 60, 1),
                "downtime_min": round(o.downtime_s / 60, 1),
                "setup_min": round(o.setup_s / 60, 1),
                "run_min": min1(o.run_s),
                "total": o.total,
                "good": o.good,
                "scrap": o.scrap,
                "ideal_cycle_s": o.ideal_cycle_s,
                "ideal_source": o.ideal_source,
                "availability": r4(o.availability),
                "performance": r4(o.performance),
                "quality": r4(o.quality),
                "oee": r4(o.oee),
                "notes": list(o.notes),
                "impossible": list(o.impossible),
            }
            for o in d.oee
        },
    }
