"""The tool-life history report: run quantity per tool change, from the signal history.

The plants' old tracker kept ``InsToolLifeHistory``: for every tool change, the quantity
the tool ran, per machine, tool and job. Here a change is a tool counter (``tool_life`` or
``machining_event`` signal, subject = the tool) reading lower than the previous reading
of the same machine and tool, in stream order; the run's quantity is that previous
reading (the counter counts up from the last change). The job is the machine's
``program`` at the change (DuckDB ``ASOF JOIN``). The standard life beside it comes from
``rules.machines.<machine>.tools.<tool>.life``.

Limits: counters counting down, and Okuma's rolled-back counters (a running total kept
across a rollback, DOMAIN.md), are not followed here; a counter reset with no reading
before it in the window (the first run seen) yields no row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
from openpyxl import Workbook
from openpyxl.styles import Border, Font, PatternFill, Side

from core.config import RepsysConfig
from core.sources import HistoryReadError
from core.storage import StorageError
from core.toollife import ToolRun
from history.read import query

SQL = """
WITH readings AS (
  SELECT machine::VARCHAR AS machine, subject::VARCHAR AS tool, value_num AS counter,
         source_ts,
         lag(value_num) OVER (PARTITION BY machine, subject ORDER BY id_ms, id_seq) AS before
  FROM signals
  WHERE name IN ('tool_life', 'machining_event') AND value_num IS NOT NULL AND subject <> ''
), changes AS (
  SELECT machine, tool, source_ts, before AS quantity
  FROM readings WHERE before IS NOT NULL AND counter < before
), programs AS (
  SELECT machine::VARCHAR AS machine, source_ts, trim(x, '"') AS job
  FROM signals WHERE name = 'program'
)
SELECT c.machine, c.tool, p.job, c.source_ts, c.quantity
FROM changes c ASOF LEFT JOIN programs p ON c.machine = p.machine AND c.source_ts >= p.source_ts
ORDER BY c.machine, c.tool, c.source_ts
"""
HEADER = ("machine", "tool", "job", "changed_at", "run_quantity", "standard_life", "of_life")


def tool_runs(cfg: RepsysConfig, start: date, end: date) -> list[ToolRun]:
    """Every tool change in the plant dates ``start``..``end``, from the history."""
    _, rows = query(cfg, SQL, start, end)
    specs = cfg.rules.machines
    out = []
    for machine, tool, job, ts, quantity in rows:
        spec = specs.get(machine)
        tool_spec = spec.tools.get(tool) if spec else None
        out.append(
            ToolRun(
                machine=machine,
                tool=tool,
                job=job or "",
                changed_at=datetime.fromtimestamp(ts, UTC),
                quantity=int(quantity),
                life=tool_spec.life if tool_spec else None,
            )
        )
    return out


def write_xlsx(path: Path, runs: list[ToolRun], zone: str) -> None:
    """The report as a workbook: one sheet, the plants' header style (bold, yellow)."""
    from zoneinfo import ZoneInfo  # noqa: PLC0415 - only here

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Tool life history"
    sheet.append(HEADER)
    thin = Side(style="thin")
    for cell in sheet[1]:
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", start_color="FFFF00")
        cell.border = Border(top=thin, bottom=thin, left=thin, right=thin)
    local = ZoneInfo(zone)
    for r in runs:
        at = r.changed_at.astimezone(local).replace(tzinfo=None)
        sheet.append((r.machine, r.tool, r.job, at, r.quantity, r.life, r.of_life))
    book.save(path)


@dataclass(frozen=True)
class HistoryToolLife:
    """The report as a :class:`core.toollife.ToolLifeHistory`, for the web's page."""

    cfg: RepsysConfig

    def runs(self, start: date, end: date) -> list[ToolRun]:
        try:
            return tool_runs(self.cfg, start, end)
        except (StorageError, duckdb.Error) as exc:
            raise HistoryReadError(f"the signal history could not be read: {exc}") from exc

    def write_xlsx(self, path: Path, runs: list[ToolRun]) -> None:
        write_xlsx(path, runs, self.cfg.plant.timezone)
