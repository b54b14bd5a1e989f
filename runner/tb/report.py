"""Trial balance step 10: the report as the plants had it, stored and mailed.

Columns ``period, category_type, category_name, sub_category_name, account_no,
account_name, current_debit_credit, ytd_debit_credit``, ordered by period then account;
an ``.xlsx`` whose header is bold, bordered and yellow (one sheet per PCN) and a CSV per
PCN with exact decimal amounts; named like ``TB-202306_to_202406_on_07-07_DM``; mailed as
"Trial Balance Report - <date>" to ``runner.tb.report_to``.

An account appears from its first period on (``start_period``); before it existed the
trial balance does not list it. A period whose rounded lines would not foot has one more
line, ``ROUNDING`` "Rounding difference (cents)", last (runner/README.md, "Money and
rounding").
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from core.db.warehouse import TBAccount, TBAccountPeriodBalance
from runner.errors import NotifyError, StepFailed
from runner.notify import Attachment, Message
from runner.steps import StepContext, StepResult
from runner.tb.common import period_range, request_pcns
from runner.tb.recreate import ROUNDING_ACCOUNT, ROUNDING_NAME
from runner.tb.xlsx import write_workbook

COLUMNS = (
    "period",
    "category_type",
    "category_name",
    "sub_category_name",
    "account_no",
    "account_name",
    "current_debit_credit",
    "ytd_debit_credit",
)
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

_WIDTHS = (10, 14, 24, 24, 18, 32, 22, 22)


@dataclass(frozen=True)
class TBLine:
    """One line of the report; amounts in cents."""

    period: int
    period_display: str
    category_type: str
    category_name: str
    sub_category_name: str
    account_no: str
    account_name: str
    current_cents: int
    ytd_cents: int

    def values(self) -> tuple[str, str, str, str, str, str, Decimal, Decimal]:
        return (
            self.period_display,
            self.category_type,
            self.category_name,
            self.sub_category_name,
            self.account_no,
            self.account_name,
            Decimal(self.current_cents).scaleb(-2),
            Decimal(self.ytd_cents).scaleb(-2),
        )


def report_lines(session: Session, pcn: int, start: int, end: int) -> list[TBLine]:
    """The trial balance of one PCN, ``start..end``, ordered by period then account."""
    b, a = TBAccountPeriodBalance, TBAccount
    rows = session.execute(
        select(
            b.period,
            b.period_display,
            a.category_type,
            a.category_name,
            a.sub_category_name,
            b.account_no,
            a.account_name,
            b.balance_cents,
            b.ytd_balance_cents,
        )
        .join(a, and_(a.pcn == b.pcn, a.account_no == b.account_no), isouter=True)
        .where(
            b.pcn == pcn,
            b.period.between(start, end),
            or_(
                b.account_no == ROUNDING_ACCOUNT,
                a.start_period == 0,
                a.start_period <= b.period,
            ),
        )
        .order_by(b.period, b.account_no)
    )
    # The rounding line has no account of Plex's chart: no category, its own name.
    rounding = ("", "", "", ROUNDING_ACCOUNT, ROUNDING_NAME)
    return [
        TBLine(*row[:2], *(row[2:7] if row[6] is not None else rounding), *row[7:]) for row in rows
    ]


def file_stem(start: int, end: int, day: datetime, suffix: str) -> str:
    """``TB-202306_to_202406_on_07-07_DM``: the name the plants gave the report."""
    stem = f"TB-{start}_to_{end}_on_{day:%m-%d}"
    return f"{stem}_{suffix}" if suffix else stem


def write_xlsx(path: Path, sheets: dict[int, list[TBLine]]) -> None:
    """The workbook, a sheet per PCN, written as text (``runner/tb/xlsx.py`` says why)."""
    write_workbook(
        path,
        COLUMNS,
        _WIDTHS,
        {
            str(pcn): (
                (
                    (
                        line.period_display,
                        line.category_type,
                        line.category_name,
                        line.sub_category_name,
                        line.account_no,
                        line.account_name,
                    ),
                    (line.current_cents, line.ytd_cents),
                )
                for line in lines
            )
            for pcn, lines in sheets.items()
        },
    )


def write_csv(path: Path, lines: list[TBLine]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for line in lines:
            writer.writerow(line.values())


class Report:
    name = "report"

    def run(self, ctx: StepContext) -> StepResult:
        now = ctx.services.clock()
        sheets: dict[int, list[TBLine]] = {}
        starts, ends = [], []
        with ctx.sessions() as session:
            for pcn in request_pcns(ctx):
                rng = period_range(session, ctx, pcn)
                starts.append(rng.start_period)
                ends.append(rng.end_period)
                sheets[pcn] = report_lines(session, pcn, rng.start_period, rng.end_period)
        if not any(sheets.values()):
            raise StepFailed("the trial balance has no lines")
        cfg = ctx.cfg.runner.tb
        stem = file_stem(min(starts), max(ends), now, cfg.file_suffix)
        folder = ctx.output_dir()
        xlsx = folder / f"{stem}.xlsx"
        write_xlsx(xlsx, sheets)
        for pcn, lines in sheets.items():
            name = f"{stem}.csv" if len(sheets) == 1 else f"{stem}_{pcn}.csv"
            write_csv(folder / name, lines)
        ctx.set_result(xlsx)
        count = sum(len(lines) for lines in sheets.values())
        mailed = self._mail(ctx, xlsx, now, count)
        return StepResult(count, f"{xlsx.name}: {count} lines" + mailed)

    def _mail(self, ctx: StepContext, xlsx: Path, now: datetime, count: int) -> str:
        cfg = ctx.cfg.runner.tb
        if not cfg.report_to:
            return ""
        if ctx.services.mailer is None:
            raise StepFailed("runner.tb.report_to is set but runner.smtp is not configured")
        message = Message(
            subject=cfg.report_subject.format(date=f"{now:%m-%d-%Y}"),
            text=(
                f"The trial balance {ctx.request.name} requested by "
                f"{ctx.request.requester or 'the scheduler'} is attached ({count} lines)."
            ),
            attachments=(Attachment(xlsx.name, xlsx.read_bytes(), XLSX_MIME),),
        )
        try:
            ctx.services.mailer.send(cfg.report_to, message)
        except NotifyError as exc:
            raise StepFailed(f"mailing the report failed: {exc}", reason=exc.reason) from exc
        return f"; mailed to {len(cfg.report_to)}"
