"""Trial balance steps 8 and 9 (recreate period balances) and step 10, the balance check
that writes the trial balance.

8. ``recreate_closed``: the closed window, from the anchor's stored year-to-date amounts
   and the closed-period balances.
9. ``recreate_open``: the open window, continuing from the closed window's last period,
   with data source 4814's activity for open periods.
10. ``check_balanced``: for every PCN of the request and every recalculated period,
    exact debits must equal exact credits (and, with ``check_ytd``, year-to-date debits
    year-to-date credits); only then are the lines rounded to cents
    (:func:`runner.tb.transform.round_lines`) and written to ``tb_account_period_balance``,
    every PCN in one fenced transaction.

Steps 8 and 9 compute in memory (exact micros) and write nothing: a run refused at the
check, or stopped anywhere before it, leaves the last good trial balance readable and
unchanged. Step 10 takes their results from the run's hand-off (``runner/tb/handoff.py``)
and computes again what is not there (a resumed run skipped steps 8 and 9, or another
process ran them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.db.warehouse import (
    TBAccount,
    TBAccountPeriodBalance,
    TBAccountYearCategoryType,
    TBBalance,
    TBOpenActivity,
)
from runner.errors import StepFailed, Unbalanced
from runner.steps import StepContext, StepResult
from runner.tb.common import (
    calendar,
    fast_insert,
    period_range,
    placeholders,
    request_pcns,
)
from runner.tb.fiscal import FiscalCalendar
from runner.tb.handoff import TB_HANDOFF
from runner.tb.loaded import Loaded, take_loaded
from runner.tb.money import fmt_micros
from runner.tb.transform import Lines, Recreated, Window, recreate, round_lines

#: The account number and name of the rounding line (runner/README.md, "Money and
#: rounding"); "R" sorts after Plex's numeric account numbers, so it ends each period.
ROUNDING_ACCOUNT = "ROUNDING"
ROUNDING_NAME = "Rounding difference (cents)"


def load_window(
    session: Session,
    pcn: int,
    cal: FiscalCalendar,
    start: int,
    end: int,
    *,
    loaded: Loaded | None = None,
    before: Computed | None = None,
) -> Window:
    """Everything :func:`recreate` needs for ``start..end`` of one PCN, from the warehouse;
    the closed periods' amounts from ``loaded`` (step 6's batches) when it covers them, and
    the anchor's year-to-date amounts from ``before`` (the window just before this one,
    computed in this run) when it ends at the anchor."""
    accounts = list(
        session.scalars(
            select(TBAccount.account_no).where(TBAccount.pcn == pcn).order_by(TBAccount.account_no)
        )
    )
    if not accounts:
        raise StepFailed(f"no accounts of PCN {pcn} are loaded (step accounts)")
    periods = cal.between(start, end)
    window = Window.empty(accounts, periods, [cal[p].first_of_year for p in periods])
    # Revenue/expense flags: the year's snapshot, else the account's current category.
    current: dict[str, bool] = dict(
        list(
            session.execute(
                select(TBAccount.account_no, TBAccount.revenue_or_expense).where(
                    TBAccount.pcn == pcn
                )
            )
        )
    )
    years = sorted({p // 100 for p in periods})
    by_year: dict[int, dict[str, bool]] = {y: {} for y in years}
    for account_no, year, flag in _rows_of(
        session,
        "SELECT account_no, year, revenue_or_expense "  # noqa: S608 - our table name
        f"FROM {TBAccountYearCategoryType.__tablename__} "
        "WHERE pcn = {} AND year BETWEEN {} AND {}",
        (pcn, years[0], years[-1]),
    ):
        if year in by_year:  # the window's years are contiguous; this costs nothing
            by_year[year][account_no] = bool(flag)
    # One flag vector per year, shared by the year's periods (not one per period).
    vectors = {
        year: np.array([flags.get(a, current.get(a, False)) for a in accounts], dtype=bool)
        for year, flags in by_year.items()
    }
    for j, period in enumerate(periods):
        window.revenue_or_expense[:, j] = vectors[period // 100]
    _fill_anchor(session, window, pcn, cal.previous(start), before)
    closed = [p for p in periods if cal[p].closed]
    open_ = [p for p in periods if not cal[p].closed]
    if closed and loaded is not None and loaded.start <= closed[0] and closed[-1] <= loaded.end:
        for batch in loaded.batches:
            window.fill_columns(
                batch.accounts, batch.periods, batch.debits, batch.credits, only=set(closed)
            )
    elif closed:
        window.fill(_amounts(session, TBBalance, pcn, closed), only=set(closed))
    if open_:
        window.fill(_amounts(session, TBOpenActivity, pcn, open_), only=set(open_))
    return window


def _fill_anchor(
    session: Session, window: Window, pcn: int, anchor: int, before: Computed | None
) -> None:
    """The anchor's exact year-to-date amounts: from ``before`` when it ends at the
    anchor, else as stored; an account new since the anchor starts from zero."""
    index = {a: i for i, a in enumerate(window.accounts)}
    if anchor and before is not None and before.periods[-1] == anchor:
        for account_no, ytd_debit, ytd_credit in zip(
            before.accounts,
            before.out.ytd_debit[:, -1].tolist(),
            before.out.ytd_credit[:, -1].tolist(),
            strict=True,
        ):
            i = index.get(account_no)
            if i is not None:
                window.anchor_ytd_debit[i] = ytd_debit
                window.anchor_ytd_credit[i] = ytd_credit
    elif anchor:
        rows = session.execute(
            select(
                TBAccountPeriodBalance.account_no,
                TBAccountPeriodBalance.ytd_debit_micros,
                TBAccountPeriodBalance.ytd_credit_micros,
            ).where(TBAccountPeriodBalance.pcn == pcn, TBAccountPeriodBalance.period == anchor)
        )
        found = 0
        for account_no, ytd_debit, ytd_credit in rows:
            i = index.get(account_no)
            if i is not None:  # an account new since the anchor starts from zero
                window.anchor_ytd_debit[i] = ytd_debit
                window.anchor_ytd_credit[i] = ytd_credit
                found += 1
        if not found:
            raise StepFailed(f"PCN {pcn}: the anchor period {anchor} has no stored balances")


def _amounts(session: Session, table: Any, pcn: int, periods: list[int]) -> list[Any]:
    """(account, period, debit, credit) rows of ``periods``."""
    name = table.__table__.name
    return _rows_of(
        session,
        f"SELECT account_no, period, debit_micros, credit_micros FROM {name} "  # noqa: S608 - our table names
        "WHERE pcn = {} AND period BETWEEN {} AND {}",
        (pcn, min(periods), max(periods)),
    )


def _rows_of(session: Session, sql: str, params: tuple[Any, ...]) -> list[Any]:
    """``sql``'s rows straight from the driver's cursor (``{}``: a parameter marker): a
    recalculation reads up to a million amounts and 85,000 category flags, and plain
    tuples are several times cheaper than result rows."""
    marks = placeholders(session, len(params)).split(", ")
    cursor = session.connection().connection.cursor()
    try:
        cursor.execute(sql.format(*marks), params)
        return list(cursor.fetchall())
    finally:
        cursor.close()


@dataclass(frozen=True)
class Computed:
    """One window of one PCN recreated in exact micros (steps 8 and 9), not yet written."""

    pcn: int
    fence: int
    kind: str  # "closed" or "open"
    accounts: list[str]
    periods: list[int]
    window: Window
    out: Recreated


def compute_window(
    ctx: StepContext, pcn: int, kind: str, bounds: tuple[int, int], *, before: Computed | None
) -> Computed:
    """Recreate ``start..end`` of one PCN in memory (the ``kind`` window of its range)."""
    start, end = bounds
    loaded = take_loaded(ctx, pcn, start, end) if kind == "closed" else None
    with ctx.sessions() as session:
        cal = calendar(session, pcn)
        window = load_window(session, pcn, cal, start, end, loaded=loaded, before=before)
    out = recreate(window)
    return Computed(pcn, ctx.fence, kind, window.accounts, window.periods, window, out)


def _bounds(rng: Any, kind: str) -> tuple[int, int] | None:
    start, end = getattr(rng, f"start_{kind}"), getattr(rng, f"end_{kind}")
    return None if start is None or end is None else (start, end)


def computed(ctx: StepContext, pcn: int, kind: str) -> Computed | None:
    """The ``kind`` window of ``pcn`` as this run computed it, computed now if it is not
    in memory (a resumed run); ``None`` when the range has no such window."""
    with ctx.sessions() as session:
        bounds = _bounds(period_range(session, ctx, pcn), kind)
    if bounds is None:
        return None
    done = ctx.handoff(TB_HANDOFF).computed
    have = done.get((pcn, kind))
    if (
        have is not None
        and have.fence == ctx.fence
        and (have.periods[0], have.periods[-1]) == bounds
    ):
        return have
    before = computed(ctx, pcn, "closed") if kind == "open" else None
    result = compute_window(ctx, pcn, kind, bounds, before=before)
    done[(pcn, kind)] = result
    return result


class _RecreateWindow:
    """Recreate the period balances of one window (closed or open) for every PCN, in
    memory; :class:`CheckBalanced` writes them once the whole trial balance balances."""

    name: str
    window: str  # "closed" or "open": which bounds of the period range to use

    def run(self, ctx: StepContext) -> StepResult:
        cells = 0
        notes = []
        for pcn in request_pcns(ctx):
            result = computed(ctx, pcn, self.window)
            if result is None:
                notes.append(f"PCN {pcn}: no {self.window} period")
                continue
            cells += len(result.accounts) * len(result.periods)
            notes.append(f"PCN {pcn}: {result.periods[0]}..{result.periods[-1]}")
            ctx.lease.check()
        return StepResult(cells, "; ".join(notes))


class RecreateClosed(_RecreateWindow):
    name = "recreate_closed"
    window = "closed"


class RecreateOpen(_RecreateWindow):
    name = "recreate_open"
    window = "open"


_SOURCES = {
    "closed": "the closed-period balances (ODBC accounting_v_Balance_e)",
    "open": "the open-period activity (data source 4814)",
}


def check_window(pcn: int, result: Computed, *, check_ytd: bool) -> None:
    """Raise :class:`Unbalanced` at the first period of ``result`` whose exact debits and
    credits differ (or, with ``check_ytd``, year-to-date debits and credits), naming the
    PCN, the period, the amounts and where the difference comes from."""
    out, window = result.out, result.window
    sums = (
        out.debit.sum(axis=0).tolist(),
        out.credit.sum(axis=0).tolist(),
        out.ytd_debit.sum(axis=0).tolist(),
        out.ytd_credit.sum(axis=0).tolist(),
    )
    for j, period in enumerate(result.periods):
        d, c, yd, yc = (column[j] for column in sums)
        if d != c:
            raise Unbalanced(
                _unbalanced(pcn, period, "", d, c)
                + f"; the period's amounts come from {_SOURCES[result.kind]}"
            )
        if check_ytd and yd != yc:
            anchor_d = int(window.anchor_ytd_debit.sum())
            anchor_c = int(window.anchor_ytd_credit.sum())
            if j == 0 or not window.first_of_year[j]:
                where = (
                    "the stored year-to-date amounts of the anchor period before "
                    f"{result.periods[0]} differ by {fmt_micros(anchor_d - anchor_c)}"
                    if anchor_d != anchor_c
                    else "revenue or expense left unclosed at a fiscal year end"
                )
            else:
                where = "revenue or expense left unclosed at a fiscal year end"
            raise Unbalanced(
                _unbalanced(pcn, period, "year-to-date ", yd, yc)
                + f"; every period's own amounts balance, so it comes from before: {where}"
            )


def _unbalanced(pcn: int, period: int, what: str, debit: int, credit: int) -> str:
    return (
        f"PCN {pcn} period {period}: {what}debits {fmt_micros(debit)} differ from "
        f"{what}credits {fmt_micros(credit)} by {fmt_micros(debit - credit)}"
    )


#: Bound per row; the period's own columns are constants of its statement. The balances
#: are bound too: each is rounded from the exact net, not the difference of the rounded
#: debit and credit (runner/README.md, "Money and rounding").
_COLUMNS = (
    "account_no",
    "debit_cents",
    "credit_cents",
    "balance_cents",
    "ytd_debit_cents",
    "ytd_credit_cents",
    "ytd_balance_cents",
    "ytd_debit_micros",
    "ytd_credit_micros",
)


def _load(
    session: Session, cal: FiscalCalendar, result: Computed, lines: Lines, *, fence: int
) -> int:
    """Insert the rounded lines (and rounding lines), a period at a time, zipped at C speed."""
    written = 0
    out = result.out
    for j, period in enumerate(result.periods):
        p = cal[period]
        rows: Any = zip(
            result.accounts,
            lines.debit[:, j].tolist(),
            lines.credit[:, j].tolist(),
            lines.balance[:, j].tolist(),
            lines.ytd_debit[:, j].tolist(),
            lines.ytd_credit[:, j].tolist(),
            lines.ytd_balance[:, j].tolist(),
            out.ytd_debit[:, j].tolist(),
            out.ytd_credit[:, j].tolist(),
            strict=True,
        )
        current, ytd = lines.rounding[j]
        if current or ytd:
            # Debit or credit by its sign; its exact YTD is not an anchor (each period's
            # rounding line is worked out from that period's totals), so zero.
            rows = [
                *rows,
                (
                    ROUNDING_ACCOUNT,
                    max(current, 0),
                    max(-current, 0),
                    current,
                    max(ytd, 0),
                    max(-ytd, 0),
                    ytd,
                    0,
                    0,
                ),
            ]
        written += fast_insert(
            session,
            TBAccountPeriodBalance,
            _COLUMNS,
            rows,
            constants={
                "pcn": result.pcn,
                "period": period,
                "period_display": p.display,
                "closed": p.closed,
                "source_update": p.update_date,
                "fence": fence,
            },
        )
    return written


class CheckBalanced:
    """Check the exact trial balance of every PCN, then write it, all in one transaction."""

    name = "check_balanced"

    def run(self, ctx: StepContext) -> StepResult:
        check_ytd = ctx.cfg.runner.tb.check_ytd
        results: list[Computed] = []
        checked = 0
        for pcn in request_pcns(ctx):
            with ctx.sessions() as session:
                rng = period_range(session, ctx, pcn)
                wanted = calendar(session, pcn).between(rng.start_period, rng.end_period)
            mine = [r for r in (computed(ctx, pcn, k) for k in ("closed", "open")) if r]
            have = {p for r in mine for p in r.periods}
            missing = [p for p in wanted if p not in have]
            if missing:
                raise StepFailed(f"PCN {pcn}: no balances for period {missing[0]}")
            for result in mine:
                check_window(pcn, result, check_ytd=check_ytd)
            checked += len(wanted)
            results.extend(mine)
        ctx.lease.check()
        written = 0
        # Every PCN's lines replace the previous ones in one transaction: a reader sees
        # the last good trial balance or this one, never a part.
        with ctx.fenced() as session:
            for result in results:
                cal = calendar(session, result.pcn)
                session.execute(
                    delete(TBAccountPeriodBalance).where(
                        TBAccountPeriodBalance.pcn == result.pcn,
                        TBAccountPeriodBalance.period.between(
                            result.periods[0], result.periods[-1]
                        ),
                    )
                )
                written += _load(session, cal, result, round_lines(result.out), fence=ctx.fence)
        ctx.handoff(TB_HANDOFF).computed = {}
        return StepResult(
            written,
            f"{checked} periods balanced"
            + (" (with YTD)" if check_ytd else "")
            + f"; {written} lines written",
        )


__all__ = [
    "ROUNDING_ACCOUNT",
    "ROUNDING_NAME",
    "CheckBalanced",
    "Computed",
    "RecreateClosed",
    "RecreateOpen",
    "load_window",
]
