"""The escalation report as ``.xlsx``: one sheet per table of the HTML report."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter

from runner.escalation.render import EscalationData, min1
from runner.xlsxtext import as_text

_BOLD = Font(bold=True)
_YELLOW = PatternFill(fill_type="solid", start_color="FFFF00", end_color="FFFF00")
_THIN = Side(style="thin")
_BOX = Border(left=_THIN, right=_THIN, top=_THIN, bottom=_THIN)
_PCT = "0.0%"
_INT = "0"
_TIME = "yyyy-mm-dd hh:mm"


@dataclass(frozen=True)
class _Sheet:
    name: str
    header: list[str]
    rows: list[list[object]]
    #: number format by column header
    formats: dict[str, str] = field(default_factory=dict)


def _sheets(d: EscalationData) -> list[_Sheet]:
    zone = f"{d.window.local(d.window.end):%Z}"

    def local(value: datetime) -> datetime:
        # Excel has no zones: the plant-time wall clock, the zone named in the header.
        return d.window.local(value).replace(tzinfo=None)

    return [
        _Sheet(
            "Open tickets",
            [
                "machine",
                "ticket",
                "severity",
                "state",
                "age_days",
                "age_hours",
                "sla_hours",
                "breached",
                "escalated_to",
                "title",
            ],
            [
                [
                    d.name(t.machine_id),
                    t.plex_number or t.id,
                    t.severity,
                    t.state,
                    int(t.age_hours // 24),
                    round(t.age_hours - 24 * int(t.age_hours // 24), 1),
                    t.sla_hours,
                    t.breached,
                    t.level_name,
                    t.title,
                ]
                for t in d.tickets
            ],
        ),
        _Sheet(
            "Recurring",
            ["machine", "rule", "subject", "episodes", f"last_seen ({zone})"],
            [
                [d.name(r.machine_id), r.rule, r.subject, r.count, local(r.last_seen)]
                for r in d.recurring
            ],
            {f"last_seen ({zone})": _TIME},
        ),
        _Sheet(
            "Tools",
            ["machine", "changes", "tools", "latest"],
            [[d.name(x.machine_id), x.count, x.tools, x.example] for x in d.tools],
        ),
        _Sheet(
            "OEE",
            [
                "machine",
                "covered",
                "planned_min",
                "downtime_min",
                "setup_min",
                "run_min",
                "total",
                "good",
                "scrap",
                "ideal_cycle_s",
                "availability",
                "performance",
                "quality",
                "oee",
                "note",
            ],
            [
                [
                    o.name,
                    o.covered_share,
                    round(o.planned_s / 60, 1),
                    round(o.downtime_s / 60, 1),
                    round(o.setup_s / 60, 1),
                    min1(o.run_s),
                    o.total,
                    o.good,
                    o.scrap,
                    o.ideal_cycle_s,
                    o.availability,
                    o.performance,
                    o.quality,
                    o.oee,
                    o.note,
                ]
                for o in d.oee
            ],
            {
                **{k: _PCT for k in ("covered", "availability", "performance", "quality", "oee")},
                **{k: _INT for k in ("total", "good", "scrap")},
            },
        ),
    ]


def write_xlsx(path: Path, d: EscalationData) -> None:
    """One sheet per table: bold yellow boxed header, frozen, widths fitted, percentages
    as percentages (the values stay fractions, so Excel can compute with them)."""
    wb = Workbook()
    for index, spec in enumerate(_sheets(d)):
        sheet = wb.active if index == 0 else wb.create_sheet()
        assert sheet is not None
        sheet.title = spec.name
        sheet.append(spec.header)
        for cell in sheet[1]:
            cell.font, cell.fill, cell.border = _BOLD, _YELLOW, _BOX
        for row in spec.rows:
            sheet.append(row)
            as_text(sheet[sheet.max_row])  # titles and names come from machines and people
        for col, head in enumerate(spec.header, start=1):
            letter = get_column_letter(col)
            fmt = spec.formats.get(head)
            if fmt:
                for cell in sheet[letter][1:]:
                    cell.number_format = fmt
            # A percentage shows as "100.0%", whatever digits the fraction has.
            texts = [head] + [
                "100.0%" if fmt == _PCT else str(r[col - 1])
                for r in spec.rows
                if r[col - 1] is not None
            ]
            width = max(len(t) for t in texts)
            sheet.column_dimensions[letter].width = min(60, max(8, width + 2))
        sheet.freeze_panes = "A2"
    wb.save(path)
