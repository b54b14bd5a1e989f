"""The escalation report as HTML (the mail body and the stored page) and as ``.xlsx``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from jinja2 import Environment, select_autoescape
from openpyxl import Workbook
from openpyxl.styles import Border, Font, PatternFill, Side

from runner.escalation.data import OpenTicket, Recurring, ShiftWindow, ToolShort
from runner.escalation.oee import OeeRow


@dataclass(frozen=True)
class EscalationData:
    plant: str
    generated_at: datetime
    window: ShiftWindow
    tickets: list[OpenTicket]
    recurring: list[Recurring]
    tools: list[ToolShort]
    oee: list[OeeRow]

    @property
    def breached(self) -> list[OpenTicket]:
        return [t for t in self.tickets if t.breached]


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f} %"


_TEMPLATE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body { font-family: sans-serif; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th { background: #ffff00; font-weight: bold; }
th, td { border: 1px solid #444; padding: 3px 6px; }
tr.breached td { background: #fdd; } td.num { text-align: right; }
</style></head><body>
<h1>{{ title }}</h1>
<p>{{ d.plant }}: shift {{ d.window.name }}, {{ d.window.start.strftime('%Y-%m-%d %H:%M') }}
to {{ d.window.end.strftime('%Y-%m-%d %H:%M') }};
generated {{ d.generated_at.strftime('%Y-%m-%d %H:%M') }} UTC.
{{ d.tickets|length }} open tickets, {{ d.breached|length }} past their SLA.</p>
<h2>Open tickets</h2>
<table><tr><th>Machine</th><th>Ticket</th><th>Severity</th><th>State</th><th>Age (h)</th>
<th>SLA (h)</th><th>Escalated to</th><th>Title</th></tr>
{% for t in d.tickets %}
<tr{% if t.breached %} class="breached"{% endif %}><td>{{ t.machine_id }}</td>
<td>{{ t.plex_number or t.id }}</td><td>{{ t.severity }}</td><td>{{ t.state }}</td>
<td class="num">{{ '%.1f'|format(t.age_hours) }}</td>
<td class="num">{{ '%g'|format(t.sla_hours) }}</td>
<td>{{ t.level_name }}</td><td>{{ t.title }}</td></tr>
{% else %}<tr><td colspan="8">none</td></tr>{% endfor %}</table>
<h2>Recurring episodes</h2>
<table><tr><th>Machine</th><th>Rule</th><th>Subject</th><th>Episodes</th><th>Last</th></tr>
{% for r in d.recurring %}
<tr><td>{{ r.machine_id }}</td><td>{{ r.rule }}</td><td>{{ r.subject }}</td>
<td class="num">{{ r.count }}</td><td>{{ r.last_seen.strftime('%Y-%m-%d %H:%M') }}</td></tr>
{% else %}<tr><td colspan="5">none</td></tr>{% endfor %}</table>
<h2>Tools not reaching tool life</h2>
<table><tr><th>Machine</th><th>Changes</th><th>Tools</th><th>Latest</th></tr>
{% for x in d.tools %}<tr><td>{{ x.machine_id }}</td><td class="num">{{ x.count }}</td>
<td>{{ x.tools }}</td><td>{{ x.example }}</td></tr>
{% else %}<tr><td colspan="4">none</td></tr>{% endfor %}</table>
<h2>OEE by machine</h2>
<table><tr><th>Machine</th><th>Availability</th><th>Performance</th><th>Quality</th>
<th>OEE</th><th>Note</th></tr>
{% for o in d.oee %}<tr><td>{{ o.machine_id }}</td><td class="num">{{ pct(o.availability) }}</td>
<td class="num">{{ pct(o.performance) }}</td><td class="num">{{ pct(o.quality) }}</td>
<td class="num">{{ pct(o.oee) }}</td><td>{{ o.note }}</td></tr>
{% endfor %}</table>
</body></html>
"""

_ENV = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_ENV.globals["pct"] = pct


def title(d: EscalationData) -> str:
    return f"Escalation report - {d.window.name} shift {d.window.end:%m-%d-%Y}"


def render_html(d: EscalationData) -> str:
    return _ENV.from_string(_TEMPLATE).render(d=d, title=title(d))


_BOLD = Font(bold=True)
_YELLOW = PatternFill(fill_type="solid", start_color="FFFF00", end_color="FFFF00")
_THIN = Side(style="thin")
_BOX = Border(left=_THIN, right=_THIN, top=_THIN, bottom=_THIN)


def write_xlsx(path: Path, d: EscalationData) -> None:
    wb = Workbook()
    sheets: list[tuple[str, list[str], list[list[object]]]] = [
        (
            "Open tickets",
            [
                "machine",
                "ticket",
                "severity",
                "state",
                "age_hours",
                "sla_hours",
                "breached",
                "escalated_to",
                "title",
            ],
            [
                [
                    t.machine_id,
                    t.plex_number or t.id,
                    t.severity,
                    t.state,
                    t.age_hours,
                    t.sla_hours,
                    t.breached,
                    t.level_name,
                    t.title,
                ]
                for t in d.tickets
            ],
        ),
        (
            "Recurring",
            ["machine", "rule", "subject", "episodes", "last_seen"],
            [
                [r.machine_id, r.rule, r.subject, r.count, r.last_seen.replace(tzinfo=None)]
                for r in d.recurring
            ],
        ),
        (
            "Tools",
            ["machine", "changes", "tools", "latest"],
            [[x.machine_id, x.count, x.tools, x.example] for x in d.tools],
        ),
        (
            "OEE",
            ["machine", "availability", "performance", "quality", "oee", "note"],
            [
                [o.machine_id, o.availability, o.performance, o.quality, o.oee, o.note]
                for o in d.oee
            ],
        ),
    ]
    for index, (name, header, rows) in enumerate(sheets):
        sheet = wb.active if index == 0 else wb.create_sheet()
        sheet.title = name
        sheet.append(header)
        for cell in sheet[1]:
            cell.font, cell.fill, cell.border = _BOLD, _YELLOW, _BOX
        for row in rows:
            sheet.append(row)
        sheet.freeze_panes = "A2"
    wb.save(path)
