"""The fiscal calendar rules of the trial balance: order, roll-over, anchor, windows.

Periods are ``YYYYPP`` integers, ``YYYY`` the fiscal year and ``PP`` the period in it,
``01`` first. A year has 12 periods or 13 (an adjustment period). The production rules
(DOMAIN.md section 5), written once here:

* after a fiscal year's last period (12, or 13 where it exists) comes ``(YYYY+1)*100+1``;
* the *anchor* of a window is the period before its start (``YYYY-1`` 12, or 13 where the
  previous year has one, for a start in period 01);
* year-to-date resets at the first fiscal period, for revenue and expense accounts only.

Fiscal years need not be calendar years: period ``202401`` may begin in July 2023. Only
:meth:`FiscalCalendar.period_at` looks at dates.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from runner.errors import StepFailed


@dataclass(frozen=True)
class CalendarPeriod:
    period: int
    display: str
    closed: bool
    begin: date
    end: date
    update_date: str = ""

    @property
    def year(self) -> int:
        return self.period // 100

    @property
    def first_of_year(self) -> bool:
        return self.period % 100 == 1


class FiscalCalendar:
    """One PCN's periods, as loaded from ``accounting_v_Period_e``."""

    def __init__(self, pcn: int, periods: Iterable[CalendarPeriod]) -> None:
        self.pcn = pcn
        self.periods = {p.period: p for p in periods}
        if not self.periods:
            raise StepFailed(f"PCN {pcn} has no fiscal periods in Plex")
        self.ordered = sorted(self.periods)
        self._last_in_year: dict[int, int] = {}
        for period in self.ordered:
            year = period // 100
            self._last_in_year[year] = max(self._last_in_year.get(year, 0), period % 100)

    def __contains__(self, period: object) -> bool:
        return period in self.periods

    def __getitem__(self, period: int) -> CalendarPeriod:
        return self.periods[period]

    @property
    def first(self) -> int:
        return self.ordered[0]

    @property
    def last(self) -> int:
        return self.ordered[-1]

    def max_fiscal_period(self, year: int) -> int:
        """The last period number of a fiscal year (12 or 13)."""
        return self._last_in_year.get(year, 12)

    def next(self, period: int) -> int:
        """The period after ``period``: +1, or ``(year+1)*100+1`` after the year's last."""
        year, number = divmod(period, 100)
        if number < self.max_fiscal_period(year):
            return period + 1
        return (year + 1) * 100 + 1

    def previous(self, period: int) -> int:
        """The period before ``period`` (the anchor of a window starting there); 0 if none."""
        year, number = divmod(period, 100)
        before = period - 1 if number > 1 else (year - 1) * 100 + self.max_fiscal_period(year - 1)
        return before if before in self.periods else 0

    def require(self, period: int) -> CalendarPeriod:
        """The period, or :class:`StepFailed` naming the PCN and what its year has."""
        if period in self.periods:
            return self.periods[period]
        numbers = sorted(p % 100 for p in self.ordered if p // 100 == period // 100)
        have = f"periods {numbers[0]:02d} to {numbers[-1]:02d}" if numbers else "no periods"
        raise StepFailed(
            f"period {period} is not in the fiscal calendar of PCN {self.pcn} "
            f"(fiscal {period // 100} has {have})"
        )

    def between(self, start: int, end: int) -> list[int]:
        """Every period from ``start`` to ``end``, walking with the roll-over rule."""
        self.require(start)
        self.require(end)
        out = []
        period = start
        while period <= end:
            self.require(period)
            out.append(period)
            period = self.next(period)
        return out

    def period_at(self, day: date) -> int | None:
        """The regular (non-adjustment) period whose dates contain ``day``."""
        for period in self.ordered:
            p = self.periods[period]
            if p.begin <= day <= p.end and period % 100 <= 12:
                return period
        return None

    def latest_window(self, closed_count: int, today: date) -> tuple[int, int]:
        """The window of a TB without start and end: the last ``closed_count`` closed
        periods, then the open periods up to the one containing ``today``."""
        closed = [p for p in self.ordered if self.periods[p].closed]
        open_ = [p for p in self.ordered if not self.periods[p].closed]
        if not closed and not open_:  # pragma: no cover - __init__ refuses an empty calendar
            raise StepFailed(f"PCN {self.pcn} has no fiscal periods in Plex")
        start = closed[-closed_count] if len(closed) >= closed_count else self.first
        end = closed[-1] if closed else start
        current = self.period_at(today)
        for period in open_:
            if closed and period < closed[-1]:
                continue
            if current is not None and period > current:
                break
            end = period
        return start, end
