"""Recreating account period balances: period and year-to-date amounts per account.

The production procedure walked the periods of a window one at a time from its anchor:

* period debit and credit come from the source (closed-period balances or, for an open
  period, data source 4814);
* ``ytd = previous ytd + period``, except at the first fiscal period, where a revenue or
  expense account (in that fiscal year's category snapshot) starts again from the period
  alone; balance-sheet accounts keep accumulating across years;
* an account with no row at the anchor (new in the window) starts from zero.

The same walk, vectorized over accounts with numpy on integer micros (exact amounts,
``runner/tb/money.py``): one pass per period, exact, and fast enough for a million
balance rows. :func:`round_lines` then turns the exact amounts into the trial balance's
cents by the rule in ``runner/README.md`` ("Money and rounding"): every line's balance
(debit minus credit) rounded half up from its exact amount (a year-to-date figure from
the exact year-to-date total, never a sum of rounded periods), and where a period's
rounded lines do not foot to its exact total rounded, the difference on one explicit
rounding line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat

import numpy as np
import numpy.typing as npt

from runner.tb.money import cents_array

Micros = npt.NDArray[np.int64]
Cents = npt.NDArray[np.int64]


@dataclass
class Window:
    """Inputs of one recreation: accounts x periods, every amount in exact micros.

    ``revenue_or_expense[i, j]`` is account ``i``'s flag in the fiscal year of period
    ``j``; ``first_of_year[j]`` says whether period ``j`` opens a fiscal year.
    """

    accounts: list[str]
    periods: list[int]
    first_of_year: list[bool]
    revenue_or_expense: npt.NDArray[np.bool_]
    debit: Micros
    credit: Micros
    anchor_ytd_debit: Micros
    anchor_ytd_credit: Micros

    @classmethod
    def empty(
        cls, accounts: Sequence[str], periods: Sequence[int], first_of_year: Sequence[bool]
    ) -> Window:
        n, m = len(accounts), len(periods)
        return cls(
            accounts=list(accounts),
            periods=list(periods),
            first_of_year=list(first_of_year),
            revenue_or_expense=np.zeros((n, m), dtype=bool),
            debit=np.zeros((n, m), dtype=np.int64),
            credit=np.zeros((n, m), dtype=np.int64),
            anchor_ytd_debit=np.zeros(n, dtype=np.int64),
            anchor_ytd_credit=np.zeros(n, dtype=np.int64),
        )

    def fill(
        self, rows: Sequence[tuple[str, int, int, int]], *, only: set[int] | None = None
    ) -> int:
        """Add (account, period, debit, credit) rows; rows outside the window (or outside
        ``only``) are skipped.

        Returns the number of rows used. An account missing from the chart of accounts
        is skipped too: the report could not name it.
        """
        # A list comprehension per column: several times faster than zip(*rows), which
        # builds an iterator per row to transpose a million of them.
        return self.fill_columns(
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
            [r[3] for r in rows],
            only=only,
        )

    def fill_columns(
        self,
        accounts: Sequence[str],
        periods: Sequence[int],
        debits: Sequence[int],
        credits: Sequence[int],
        *,
        only: set[int] | None = None,
    ) -> int:
        """:meth:`fill` from the rows' columns (as step 6 read them)."""
        n = len(accounts)
        if not n:
            return 0
        acc = {a: i for i, a in enumerate(self.accounts)}
        per = {p: j for j, p in enumerate(self.periods) if only is None or p in only}
        # map(dict.get, keys, repeat(-1)) looks every key up without a Python-level loop.
        i = np.fromiter(map(acc.get, accounts, repeat(-1)), dtype=np.intp, count=n)
        j = np.fromiter(map(per.get, periods, repeat(-1)), dtype=np.intp, count=n)
        keep = (i >= 0) & (j >= 0)
        index = (i[keep], j[keep])
        # One vectorized scatter-add instead of a numpy item assignment per row.
        np.add.at(self.debit, index, np.array(debits, dtype=np.int64)[keep])
        np.add.at(self.credit, index, np.array(credits, dtype=np.int64)[keep])
        return int(keep.sum())


@dataclass
class Recreated:
    """Outputs: period and YTD debit/credit per account (rows) and period (columns),
    exact micros."""

    debit: Micros
    credit: Micros
    ytd_debit: Micros
    ytd_credit: Micros


def recreate(window: Window) -> Recreated:
    """Walk the window's periods from the anchor, applying the YTD reset rule."""
    n, m = window.debit.shape
    ytd_debit = np.empty((n, m), dtype=np.int64)
    ytd_credit = np.empty((n, m), dtype=np.int64)
    prev_debit = window.anchor_ytd_debit
    prev_credit = window.anchor_ytd_credit
    for j in range(m):
        d = window.debit[:, j]
        c = window.credit[:, j]
        if window.first_of_year[j]:
            reset = window.revenue_or_expense[:, j]
            ytd_debit[:, j] = np.where(reset, d, prev_debit + d)
            ytd_credit[:, j] = np.where(reset, c, prev_credit + c)
        else:
            ytd_debit[:, j] = prev_debit + d
            ytd_credit[:, j] = prev_credit + c
        prev_debit = ytd_debit[:, j]
        prev_credit = ytd_credit[:, j]
    return Recreated(window.debit, window.credit, ytd_debit, ytd_credit)


@dataclass
class Lines:
    """The trial balance's lines in cents, accounts x periods, and per period the
    rounding line.

    ``balance`` and ``ytd_balance`` (the report's two figures) are each line's exact
    debit minus credit rounded half up, so every figure shown is within half a cent of
    the ledger's; ``debit`` / ``credit`` (and the YTD pair) are the exact columns rounded
    alike, kept for reference, and need not differ by exactly ``balance``.
    ``rounding[j]`` is period ``j``'s rounding line, ``(balance, ytd_balance)``: what
    the rounded lines lack to foot to the period's exact total rounded (zero, for a
    ledger that balances); ``(0, 0)`` means the period needs no such line.
    """

    debit: Cents
    credit: Cents
    balance: Cents
    ytd_debit: Cents
    ytd_credit: Cents
    ytd_balance: Cents
    rounding: list[tuple[int, int]]


def _rounding(exact_net: Micros, lines: Cents) -> list[int]:
    """Per period: the exact total of the nets rounded, less the rounded nets' total."""
    return list((cents_array(exact_net.sum(axis=0)) - lines.sum(axis=0)).tolist())


def round_lines(out: Recreated) -> Lines:
    """Round the exact amounts to the trial balance's cents (the rule: module docstring)."""
    net, ytd_net = out.debit - out.credit, out.ytd_debit - out.ytd_credit
    balance, ytd_balance = cents_array(net), cents_array(ytd_net)
    rounding = list(zip(_rounding(net, balance), _rounding(ytd_net, ytd_balance), strict=True))
    return Lines(
        cents_array(out.debit),
        cents_array(out.credit),
        balance,
        cents_array(out.ytd_debit),
        cents_array(out.ytd_credit),
        ytd_balance,
        rounding,
    )


__all__ = ["Lines", "Recreated", "Window", "recreate", "round_lines"]
