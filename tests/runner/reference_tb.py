"""A plain reference trial balance, written from DOMAIN.md section 5 and the rounding rule
of runner/README.md ("Money and rounding"), for the differential tests.

Nothing here is shared with the code under test: amounts are ``Decimal``, periods are
walked one at a time, one account at a time.

- YTD = previous YTD + the period's debit minus credit, from zero before the ledger's
  first period; at the first fiscal period (``PP == 01``) a revenue or expense account
  starts again from the period alone, a balance-sheet account keeps accumulating.
- An account is listed from its first period on (``start_period``, 0: always).
- Each figure shown is the exact figure rounded half up (away from zero) to the cent.
- Where a period's shown figures do not add up to the period's exact total rounded
  (zero, for a ledger that balances), a line ``ROUNDING`` carries the difference, for
  the current and the year-to-date column separately.
"""

from __future__ import annotations

import csv
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from sim.accounting.ledger import Ledger

ROUNDING = "ROUNDING"
CENT = Decimal("0.01")
Line = tuple[Decimal, Decimal]


def half_up(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def reference_tb(ledger: Ledger, pcn: int, start: int, end: int) -> dict[tuple[int, str], Line]:
    """``(period, account_no) -> (current debit-credit, YTD debit-credit)``, rounded,
    for the periods ``start..end`` of ``pcn``'s calendar, rounding lines included."""
    accounts = ledger.accounts_of(pcn)
    ytd = {a.account_no: Decimal(0) for a in accounts}
    out: dict[tuple[int, str], Line] = {}
    for period in sorted(p.period for p in ledger.periods_of(pcn)):
        if period > end:
            break
        shown: dict[str, Line] = {}
        total_now = total_ytd = Decimal(0)
        for account in accounts:
            debit, credit = ledger.balance(pcn, account.account_no, period)
            now = Decimal(debit - credit) / 1_000_000
            if period % 100 == 1 and account.revenue_or_expense:
                ytd[account.account_no] = now
            else:
                ytd[account.account_no] += now
            total_now += now
            total_ytd += ytd[account.account_no]
            if account.start_period == 0 or account.start_period <= period:
                shown[account.account_no] = (half_up(now), half_up(ytd[account.account_no]))
        if period < start:
            continue
        for account_no, line in shown.items():
            out[(period, account_no)] = line
        rounding = (
            half_up(total_now) - sum(c for c, _ in shown.values()),
            half_up(total_ytd) - sum(y for _, y in shown.values()),
        )
        if any(rounding):
            out[(period, ROUNDING)] = rounding
    return out


def report_csv(xlsx_path: str, suffix: str = "") -> dict[tuple[int, str], Line]:
    """The run's CSV (beside its ``.xlsx``; ``suffix`` ``_<pcn>`` with several PCNs) as
    the reference's dict."""
    with Path(xlsx_path[: -len(".xlsx")] + suffix + ".csv").open(newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    return {(int(r[0].replace("-", "")), r[4]): (Decimal(r[6]), Decimal(r[7])) for r in rows}
