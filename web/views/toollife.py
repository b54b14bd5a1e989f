"""The tool-life history page: run quantity per tool change, from the signal history.

The plants' old tracker kept ``InsToolLifeHistory`` for years; supervisors read it to see
which tools are changed before their standard life. The rows come from the history's
report (``core.toollife.ToolLifeHistory``, computed by ``history/toollife.py`` and handed
to the app by the composition root), the same rows as ``repsys history tool-life``; the
``.xlsx`` link downloads the page's rows as the command's workbook.
"""

from __future__ import annotations

import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, Response
from starlette.background import BackgroundTask

from core.logs import get_logger
from core.sources import HistoryReadError
from core.toollife import ToolLifeHistory, ToolRun
from web.accounts import Principal
from web.auth import require
from web.csrf import check_csrf
from web.render import render
from web.roles import SUPERVISOR
from web.services import Services, services

log = get_logger(__name__)
router = APIRouter(dependencies=[Depends(check_csrf)])
#: The period shown when none is asked for: the last week of plant dates.
DEFAULT_DAYS = 7
#: The longest period one request reads (each day's files are opened by DuckDB).
MAX_DAYS = 92


class Period:
    """The page's filter, read from the query string; ``errors`` holds what was refused."""

    def __init__(self, svc: Services, start: str, end: str, machine: str) -> None:
        today = svc.clock().astimezone(_zone(svc)).date()
        self.errors: dict[str, str] = {}
        self.end = self._date("to", end, today)
        self.start = self._date("from", start, self.end - timedelta(days=DEFAULT_DAYS - 1))
        if not self.errors and self.start > self.end:
            self.errors["from"] = "The first day comes after the last one."
        elif not self.errors and (self.end - self.start).days >= MAX_DAYS:
            self.errors["from"] = f"Choose at most {MAX_DAYS} days."
        known = {m.id for m in svc.cfg.machines}
        self.machine = machine if machine in known else ""
        if machine and machine not in known:
            self.errors["machine"] = "There is no such machine."

    def _date(self, field: str, text: str, default: date) -> date:
        if not text:
            return default
        try:
            return date.fromisoformat(text)
        except ValueError:
            self.errors[field] = "Give a date as YYYY-MM-DD."
            return default

    def query(self) -> str:
        machine = f"&machine={self.machine}" if self.machine else ""
        return f"from={self.start.isoformat()}&to={self.end.isoformat()}{machine}"


def _zone(svc: Services) -> Any:
    from zoneinfo import ZoneInfo  # noqa: PLC0415 - one zone per request is cheap

    return ZoneInfo(svc.cfg.plant.timezone)


def _runs(report: ToolLifeHistory, period: Period) -> list[ToolRun]:
    runs = report.runs(period.start, period.end)
    return [r for r in runs if not period.machine or r.machine == period.machine]


FromDay = Annotated[str, Query(alias="from", max_length=10)]
ToDay = Annotated[str, Query(alias="to", max_length=10)]
MachineText = Annotated[str, Query(max_length=64)]


@router.get("/tool-life")
def tool_life_page(
    request: Request,
    principal: Annotated[Principal, Depends(require(*SUPERVISOR))],
    start: FromDay = "",
    end: ToDay = "",
    machine: MachineText = "",
) -> Response:
    """The tool changes of a period, each with its run quantity and standard life."""
    svc = services(request)
    period = Period(svc, start, end, machine)
    runs: list[ToolRun] = []
    unavailable = ""
    if svc.tool_life is None:
        unavailable = "The signal history is not set up for this web app."
    elif not period.errors:
        try:
            runs = _runs(svc.tool_life, period)
        except HistoryReadError as exc:
            log.warning("tool_life_read_failed", reason=exc.reason, error=str(exc))
            unavailable = "The signal history cannot be read just now; try again in a minute."
    status = 422 if period.errors else (503 if unavailable else 200)
    return render(
        request,
        "tool_life.html",
        {
            "period": period,
            "runs": runs,
            "unavailable": unavailable,
            "names": {m.id: m.display_name for m in svc.cfg.machines},
            "machines": svc.cfg.machines,
        },
        status_code=status,
    )


@router.get("/tool-life.xlsx")
def tool_life_xlsx(
    request: Request,
    principal: Annotated[Principal, Depends(require(*SUPERVISOR))],
    start: FromDay = "",
    end: ToDay = "",
    machine: MachineText = "",
) -> Response:
    """The page's rows as the report's workbook (written to a temporary file, streamed)."""
    svc = services(request)
    period = Period(svc, start, end, machine)
    if period.errors or svc.tool_life is None:
        # The page says what is wrong, in the same words.
        return tool_life_page(request, principal, start, end, machine)
    try:
        runs = _runs(svc.tool_life, period)
    except HistoryReadError:
        return tool_life_page(request, principal, start, end, machine)
    tmp = Path(tempfile.mkdtemp(prefix="repsys-tool-life-"))
    name = f"tool-life_{period.start.isoformat()}_to_{period.end.isoformat()}.xlsx"
    path = tmp / name
    svc.tool_life.write_xlsx(path, runs)
    log.info("tool_life_downloaded", user=principal.username, rows=len(runs))
    return FileResponse(
        path,
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        filename=name,
        background=BackgroundTask(_remove, tmp),
    )


def _remove(folder: Path) -> None:
    for child in folder.iterdir():
        child.unlink(missing_ok=True)
    folder.rmdir()
