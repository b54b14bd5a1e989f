"""The fiscal calendar of the simulated ledger (rows of ``accounting_v_Period_e``).

Periods are ``YYYYPP`` integers where ``YYYY`` is the *fiscal* year and ``PP`` the period
within it (``01`` first, ``13`` the adjustment period where a year has one). A fiscal year
need not be a calendar year: with ``fiscal_start_month=7`` period ``202401`` is July 2023.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sim.accounting.errors import LedgerError


def check_period(period: int) -> None:
    """Raise :class:`LedgerError` unless ``period`` looks like ``YYYYPP`` (PP 01..13)."""
    if not (190001 <= period <= 299913) or not (1 <= period % 100 <= 13):
        raise LedgerError(f"period {period} is not YYYYPP with PP from 01 to 13")


@dataclass(frozen=True)
class Period:
    """One fiscal period of one PCN (a row of ``accounting_v_Period_e``)."""

    pcn: int
    period: int
    fiscal_order: int
    begin: date
    end: date
    closed: bool
    key: int
    updated: datetime

    @property
    def fiscal_year(self) -> int:
        return self.period // 100

    @property
    def display(self) -> str:
        return f"{self.period // 100}-{self.period % 100:02d}"


def _month_begin(fiscal_year: int, number: int, start_month: int) -> date:
    """First day of fiscal period ``number`` (1..12) of ``fiscal_year``."""
    month0 = (start_month - 1) + (number - 1)  # months since January of the start year
    # A fiscal year named after the calendar year it ends in starts the year before,
    # unless it starts in January.
    year = fiscal_year - (1 if start_month != 1 else 0) + month0 // 12
    return date(year, month0 % 12 + 1, 1)


def fiscal_calendar(
    pcn: int,
    first_year: int,
    last_year: int,
    *,
    thirteen: Iterable[int] = (),
    fiscal_start_month: int = 1,
    closed_through: int = 0,
    first_key: int = 1,
) -> list[Period]:
    """The periods of fiscal years ``first_year..last_year``; ``thirteen`` have a period 13.

    Periods up to ``closed_through`` are closed, the rest open. Period 13 is the
    adjustment period: it has the year's last day as both begin and end.
    """
    if not 1 <= fiscal_start_month <= 12:
        raise LedgerError("fiscal_start_month must be 1..12")
    thirteen = set(thirteen)
    out: list[Period] = []
    key = first_key
    for year in range(first_year, last_year + 1):
        count = 13 if year in thirteen else 12
        for number in range(1, count + 1):
            if number <= 12:
                begin = _month_begin(year, number, fiscal_start_month)
                end = begin.replace(day=calendar.monthrange(begin.year, begin.month)[1])
            else:
                begin = end = out[-1].end  # the adjustment period sits on the last day
            period = year * 100 + number
            closed = period <= closed_through
            updated = datetime(end.year, end.month, end.day, 12) + timedelta(days=10)
            out.append(Period(pcn, period, number, begin, end, closed, key, updated))
            key += 1
    return out
