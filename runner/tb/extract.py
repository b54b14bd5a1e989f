"""Trial balance steps 1 to 7: from Plex into the warehouse, each load fenced.

1. ``year_category_types``: each account's category type per fiscal year (snapshot kept;
   this year and next refreshed).
2. ``accounts``: the chart of accounts with categories.
3. ``periods``: the fiscal calendar; the previous load is kept as ordinal 0.
4. ``period_ranges``: the request's window (or the latest: ``closed_window`` closed
   periods and the open ones), its anchor, and its closed and open windows.
5. ``start_period_update``: moves the recalculation start back to the first period whose
   stored balances cannot serve as an anchor (missing, computed from an open period, or
   from a Plex period that changed since).
6. ``closed_balances``: closed-period balances over ODBC for the recalculation window.
7. ``open_activity``: open-period activity from data source 4814, one period a call,
   rolling to ``(year+1)*100+1`` after a fiscal year's last period.

Every load is delete-then-insert scoped by PCN (and period), so each step may run again.
"""

from __future__ import annotations

from sqlalchemy import Integer, cast, delete, func, select, update

from core.db.warehouse import (
    TBAccount,
    TBAccountPeriodBalance,
    TBAccountYearCategoryType,
    TBBalance,
    TBOpenActivity,
    TBPeriod,
    TBPeriodRange,
)
from plex.errors import PlexError
from runner.errors import SourceError, StepFailed
from runner.steps import StepContext, StepResult
from runner.tb.common import (
    SourcedStep,
    accounting,
    bulk_insert,
    calendar,
    fast_insert,
    period_range,
    request_pcns,
    split_windows,
)
from runner.tb.fiscal import CalendarPeriod, FiscalCalendar
from runner.tb.handoff import TB_HANDOFF
from runner.tb.loaded import remember_loaded
from runner.tb.money import to_micros
from runner.tb.prefetch import Key, Prefetch, params_of
from runner.tb.reader import balances_in_child
from runner.tb.source import BalanceBatch, DataSourceClient, ResultRows, SourcePeriod


def _source_calendar(pcn: int, periods: list[SourcePeriod]) -> FiscalCalendar:
    return FiscalCalendar(
        pcn, (CalendarPeriod(p.period, p.display, p.closed, p.begin, p.end) for p in periods)
    )


class YearCategoryTypes(SourcedStep):
    name = "year_category_types"

    def run(self, ctx: StepContext) -> StepResult:
        written = 0
        refreshed: set[int] = set()
        with accounting(self.sources) as source:
            for pcn in request_pcns(ctx):
                accounts = source.accounts(pcn)
                cal = _source_calendar(pcn, source.periods(pcn))
                open_years = [p // 100 for p in cal.ordered if not cal[p].closed]
                this_year = min(open_years) if open_years else cal.last // 100
                refresh = {this_year, this_year + 1}
                years = sorted({p // 100 for p in cal.ordered} | refresh)
                with ctx.fenced() as session:
                    session.execute(
                        delete(TBAccountYearCategoryType).where(
                            TBAccountYearCategoryType.pcn == pcn,
                            TBAccountYearCategoryType.year.in_(refresh),
                        )
                    )
                    have = set(
                        session.connection().execute(
                            select(
                                TBAccountYearCategoryType.account_no,
                                TBAccountYearCategoryType.year,
                            ).where(TBAccountYearCategoryType.pcn == pcn)
                        )
                    )
                    written += fast_insert(
                        session,
                        TBAccountYearCategoryType,
                        ("account_no", "year", "category_type", "revenue_or_expense"),
                        (
                            (a.account_no, year, a.category_type, a.revenue_or_expense)
                            for year in years
                            for a in accounts
                            if (a.account_no, year) not in have
                        ),
                        constants={"pcn": pcn, "fence": ctx.fence},
                    )
                refreshed |= refresh
        return StepResult(written, f"{written} account-years; refreshed {sorted(refreshed)}")


class Accounts(SourcedStep):
    name = "accounts"

    def run(self, ctx: StepContext) -> StepResult:
        written = 0
        with accounting(self.sources) as source:
            for pcn in request_pcns(ctx):
                accounts = source.accounts(pcn)
                if not accounts:
                    raise StepFailed(f"PCN {pcn} has no accounts in Plex")
                with ctx.fenced() as session:
                    session.execute(delete(TBAccount).where(TBAccount.pcn == pcn))
                    written += bulk_insert(
                        session,
                        TBAccount,
                        (
                            {
                                "pcn": pcn,
                                "account_no": a.account_no,
                                "account_key": a.account_key,
                                "account_name": a.name,
                                "active": a.active,
                                "category_type": a.category_type,
                                "revenue_or_expense": a.revenue_or_expense,
                                "category_no": a.category_no,
                                "category_name": a.category_name,
                                "sub_category_no": a.sub_category_no,
                                "sub_category_name": a.sub_category_name,
                                "start_period": a.start_period,
                                "fence": ctx.fence,
                            }
                            for a in accounts
                        ),
                    )
        return StepResult(written, f"{written} accounts")


class Periods(SourcedStep):
    name = "periods"

    def run(self, ctx: StepContext) -> StepResult:
        written = 0
        with accounting(self.sources) as source:
            for pcn in request_pcns(ctx):
                periods = source.periods(pcn)
                if not periods:
                    raise StepFailed(f"PCN {pcn} has no fiscal periods in Plex")
                with ctx.fenced() as session:
                    # The previous load stays as ordinal 0, as in production.
                    session.execute(
                        delete(TBPeriod).where(TBPeriod.pcn == pcn, TBPeriod.ordinal == 0)
                    )
                    session.execute(
                        update(TBPeriod)
                        .where(TBPeriod.pcn == pcn, TBPeriod.ordinal == 1)
                        .values(ordinal=0)
                    )
                    written += bulk_insert(
                        session,
                        TBPeriod,
                        (
                            {
                                "pcn": pcn,
                                "period": p.period,
                                "ordinal": 1,
                                "period_key": p.period_key,
                                "fiscal_order": p.fiscal_order,
                                "period_display": p.display,
                                "begin_date": p.begin,
                                "end_date": p.end,
                                "closed": p.closed,
                                "update_date": p.update_date,
                                "fence": ctx.fence,
                            }
                            for p in periods
                        ),
                    )
        return StepResult(written, f"{written} periods")


def _store_range(row: TBPeriodRange, cal: FiscalCalendar, calc_start: int) -> None:
    row.calc_start = calc_start
    row.anchor_period = cal.previous(calc_start)
    windows = split_windows(cal, calc_start, row.end_period)
    row.start_closed, row.end_closed, row.start_open, row.end_open = windows


class PeriodRanges:
    name = "period_ranges"

    def run(self, ctx: StepContext) -> StepResult:
        notes = []
        today = ctx.services.clock().date()
        with ctx.fenced() as session:
            for pcn in request_pcns(ctx):
                cal = calendar(session, pcn)
                params = ctx.params
                if "start" in params:
                    start, end = int(params["start"]), int(params["end"])
                    cal.require(start)
                    cal.require(end)
                else:
                    start, end = cal.latest_window(ctx.cfg.runner.tb.closed_window, today)
                session.execute(delete(TBPeriodRange).where(TBPeriodRange.pcn == pcn))
                row = TBPeriodRange(
                    pcn=pcn,
                    request_id=ctx.request.id,
                    start_period=start,
                    end_period=end,
                    fence=ctx.fence,
                )
                _store_range(row, cal, start)
                session.add(row)
                notes.append(
                    f"PCN {pcn}: {start}..{end}, closed {row.start_closed}..{row.end_closed}, "
                    f"open {row.start_open}..{row.end_open}"
                )
        return StepResult(len(notes), "; ".join(notes))


class StartPeriodUpdate:
    name = "start_period_update"

    def run(self, ctx: StepContext) -> StepResult:
        notes = []
        with ctx.fenced() as session:
            for pcn in request_pcns(ctx):
                rng = period_range(session, ctx, pcn)
                cal = calendar(session, pcn)
                stored = {
                    period: (low, high, bool(closed))
                    for period, low, high, closed in session.execute(
                        select(
                            TBAccountPeriodBalance.period,
                            func.min(TBAccountPeriodBalance.source_update),
                            func.max(TBAccountPeriodBalance.source_update),
                            func.min(cast(TBAccountPeriodBalance.closed, Integer)),
                        )
                        .where(
                            TBAccountPeriodBalance.pcn == pcn,
                            TBAccountPeriodBalance.period < rng.start_period,
                        )
                        .group_by(TBAccountPeriodBalance.period)
                    )
                }
                calc_start = cal.first
                anchor = cal.previous(rng.start_period)
                if anchor:
                    for period in cal.between(cal.first, anchor):
                        low, high, closed = stored.get(period, ("", "x", False))
                        if not closed or low != high or low != cal[period].update_date:
                            break
                        calc_start = cal.next(period)
                calc_start = min(calc_start, rng.start_period)
                _store_range(rng, cal, calc_start)
                rng.fence = ctx.fence
                moved = calc_start < rng.start_period
                notes.append(
                    f"PCN {pcn}: recalculate from {calc_start}"
                    + (f" (before the requested {rng.start_period})" if moved else "")
                )
        return StepResult(len(notes), "; ".join(notes))


class ClosedBalances(SourcedStep):
    name = "closed_balances"

    def run(self, ctx: StepContext) -> StepResult:
        open_source = self.sources.accounting
        if open_source is None:
            raise StepFailed("no ODBC source is configured (runner.tb.odbc.connection_string)")
        written = 0
        for pcn in request_pcns(ctx):
            with ctx.sessions() as session:
                rng = period_range(session, ctx, pcn)
                start, end = rng.calc_start, rng.end_period
            ctx.lease.check()
            fence = ctx.fence
            loaded: list[BalanceBatch] = []
            # The ODBC read runs in a child process while this one loads what it has read
            # (runner/tb/reader.py says why not a thread).
            with (
                balances_in_child(open_source, pcn, start, end) as batches,
                ctx.fenced() as session,
            ):
                session.execute(
                    delete(TBBalance).where(
                        TBBalance.pcn == pcn, TBBalance.period.between(start, end)
                    )
                )
                for batch in batches:
                    # Rows zipped from the batch's columns at C speed.
                    written += fast_insert(
                        session,
                        TBBalance,
                        ("period", "account_no", "debit_micros", "credit_micros"),
                        zip(
                            batch.periods, batch.accounts, batch.debits, batch.credits, strict=True
                        ),
                        constants={"pcn": pcn, "fence": fence},
                    )
                    loaded.append(batch)
            # Committed: step 8 of this run may take the rows from here, not read them back.
            remember_loaded(ctx, pcn, start, end, loaded)
        return StepResult(written, f"{written} closed-period balances")


def _open_calls(ctx: StepContext) -> list[Key]:
    """(pcn, period) of each call step 7 makes: the open periods of the request's open
    window, one a call, with the roll-over after a fiscal year's last period."""
    calls: list[Key] = []
    for pcn in request_pcns(ctx):
        with ctx.sessions() as session:
            rng = period_range(session, ctx, pcn)
            cal = calendar(session, pcn)
        if rng.start_open is None or rng.end_open is None:
            continue
        period = rng.start_open
        while period <= rng.end_open:
            if not cal.require(period).closed:
                calls.append((pcn, period))
            period = cal.next(period)
    return calls


#: Data source 4814's columns by position (1-based in DOMAIN.md): 1 account_no,
#: 4 beginning balance, 5 debit, 6 credit, 7 ending balance.
_ACCOUNT, _BEGIN, _DEBIT, _CREDIT, _END = 0, 3, 4, 5, 6


class OpenActivity(SourcedStep):
    name = "open_activity"

    def prefetch(self, ctx: StepContext) -> None:
        """Start this step's Plex calls on a thread (runner/tb/prefetch.py says why)."""
        if self.sources.data_source is None:
            return
        calls = _open_calls(ctx)
        if calls:
            prefetch = Prefetch(self.sources.data_source, ctx.cfg.runner.tb.data_source_key, calls)
            ctx.closers.append(prefetch.stop)
            ctx.handoff(TB_HANDOFF).prefetch = prefetch.start()

    def run(self, ctx: StepContext) -> StepResult:
        if self.sources.data_source is None:
            raise StepFailed("no Plex client is configured for data source 4814 (plex section)")
        key = ctx.cfg.runner.tb.data_source_key
        handoff = ctx.handoff(TB_HANDOFF)
        prefetched, handoff.prefetch = handoff.prefetch, None
        written = calls = 0
        client = self.sources.data_source()
        try:
            for pcn, period in _open_calls(ctx):
                answer = prefetched.take((pcn, period)) if prefetched else None
                written += self._period(ctx, client, key, pcn, period, answer=answer)
                calls += 1
                ctx.lease.check()
        finally:
            if prefetched is not None:
                prefetched.stop()
            client.close()
        return StepResult(written, f"{written} open-period rows from {calls} calls of {key}")

    def _period(
        self,
        ctx: StepContext,
        client: DataSourceClient,
        key: int,
        pcn: int,
        period: int,
        *,
        answer: ResultRows | None,
    ) -> int:
        result = answer
        if result is None:
            try:
                result = client.execute_data_source(key, params_of(pcn, period))
            except PlexError as exc:
                raise SourceError(f"data source {key} for {period}: {exc}", reason="plex") from exc
        rows = []
        for row in result.rows:
            values = list(row.values())
            if len(values) < 7:
                raise SourceError(
                    f"data source {key} returned {len(values)} columns, expected 7",
                    reason="plex",
                )
            rows.append(
                {
                    "pcn": pcn,
                    "period": period,
                    "account_no": values[_ACCOUNT],
                    "beginning_micros": to_micros(values[_BEGIN]),
                    "debit_micros": to_micros(values[_DEBIT]),
                    "credit_micros": to_micros(values[_CREDIT]),
                    "ending_micros": to_micros(values[_END]),
                    "fence": ctx.fence,
                }
            )
        with ctx.fenced() as session:
            session.execute(
                delete(TBOpenActivity).where(
                    TBOpenActivity.pcn == pcn, TBOpenActivity.period == period
                )
            )
            return bulk_insert(session, TBOpenActivity, rows)
