"""A seeded general ledger: the accounting data behind the simulated Plex.

The trial balance reads Plex two ways (DOMAIN.md section 5): closed periods over ODBC
(``accounting_v_*`` views, built from this ledger by :mod:`sim.accounting.odbc`) and open
periods through SOAP data source 4814 (served by ``sim.plex`` from
:meth:`Ledger.account_activity_summary`). Both read one :class:`Ledger`, so the expected
trial balance of a seeded ledger is one, whichever way it is read.

This module keeps the postings, answers from them and builds the seeded ledgers, over
the chart of accounts (:mod:`sim.accounting.chart`), the fiscal calendar
(:mod:`sim.accounting.periods`) and integer micros (:mod:`sim.accounting.money`).

Every journal entry balances, and each fiscal year before the current one is closed in
its last period (13 where present, else 12): its revenue and expense balances move to
Retained Earnings, so year-to-date debits equal credits in every period too.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sim.accounting.chart import CHART, FLOWS, RETAINED_EARNINGS, Account
from sim.accounting.errors import LedgerError
from sim.accounting.money import CENT, money
from sim.accounting.periods import Period, check_period, fiscal_calendar

#: The columns of data source 4814 (Account_Activity_Summary_xPCN_Get), in order.
ACTIVITY_COLUMNS = (
    "Account_No",
    "Account_Name",
    "Account_Type",
    "Beginning_Balance",
    "Debit",
    "Credit",
    "Ending_Balance",
)


@dataclass
class Ledger:
    """Accounts, the fiscal calendar and per-period debit and credit totals (micros)."""

    accounts: list[Account] = field(default_factory=list)
    periods: list[Period] = field(default_factory=list)
    #: (pcn, account_no, period) -> [debit micros, credit micros]
    postings: dict[tuple[int, str, int], list[int]] = field(default_factory=dict)
    #: pcn -> account -> [(period, debit, credit)], built on demand for data source 4814
    _index: dict[int, dict[str, list[tuple[int, int, int]]]] | None = field(
        default=None, repr=False, compare=False
    )

    # --- building ---------------------------------------------------------------------

    def post(self, pcn: int, period: int, debit: str, credit: str, cents: int) -> None:
        """One balanced entry: ``cents`` debited to ``debit`` and credited to ``credit``."""
        self.post_micros(pcn, period, debit, credit, cents * CENT)

    def post_micros(self, pcn: int, period: int, debit: str, credit: str, micros: int) -> None:
        """One balanced entry of ``micros`` (sub-cent amounts: ``15_000`` is 0.015)."""
        if micros <= 0:
            raise LedgerError("an entry's amount must be positive")
        self._index = None
        self.postings.setdefault((pcn, debit, period), [0, 0])[0] += micros
        self.postings.setdefault((pcn, credit, period), [0, 0])[1] += micros

    def close_year(self, pcn: int, fiscal_year: int, retained_earnings: str) -> None:
        """Move the year's revenue and expense balances to ``retained_earnings``.

        The closing entries go into the year's last period (13 where it exists).
        """
        last = max(p.period for p in self.periods if p.pcn == pcn and p.fiscal_year == fiscal_year)
        for account in self.accounts_of(pcn):
            if not account.revenue_or_expense:
                continue
            net = 0
            for p in self.periods_of(pcn):
                if p.fiscal_year == fiscal_year:
                    d, c = self.balance(pcn, account.account_no, p.period)
                    net += d - c
            if net > 0:
                self.post_micros(pcn, last, retained_earnings, account.account_no, net)
            elif net < 0:
                self.post_micros(pcn, last, account.account_no, retained_earnings, -net)

    def close_years(self, pcn: int, years: Iterable[int], retained_earnings: str) -> None:
        """:meth:`close_year` for several years in one pass over the postings."""
        wanted = set(years)
        rev_exp = {a.account_no for a in self.accounts_of(pcn) if a.revenue_or_expense}
        nets: dict[tuple[str, int], int] = {}
        for (p, account_no, period), (d, c) in self.postings.items():
            if p == pcn and account_no in rev_exp and period // 100 in wanted:
                key = (account_no, period // 100)
                nets[key] = nets.get(key, 0) + d - c
        last: dict[int, int] = {}
        for calendar_period in self.periods_of(pcn):
            last[calendar_period.fiscal_year] = calendar_period.period
        for (account_no, year), net in sorted(nets.items()):
            if net > 0:
                self.post_micros(pcn, last[year], retained_earnings, account_no, net)
            elif net < 0:
                self.post_micros(pcn, last[year], account_no, retained_earnings, -net)

    # --- reading ----------------------------------------------------------------------

    def _postings_by_account(self, pcn: int) -> dict[str, list[tuple[int, int, int]]]:
        if self._index is None:
            index: dict[int, dict[str, list[tuple[int, int, int]]]] = {}
            for (p, account_no, period), (d, c) in self.postings.items():
                index.setdefault(p, {}).setdefault(account_no, []).append((period, d, c))
            self._index = index
        return self._index.get(pcn, {})

    @property
    def pcns(self) -> list[int]:
        return sorted({a.pcn for a in self.accounts})

    def accounts_of(self, pcn: int) -> list[Account]:
        return sorted((a for a in self.accounts if a.pcn == pcn), key=lambda a: a.account_no)

    def periods_of(self, pcn: int) -> list[Period]:
        return sorted((p for p in self.periods if p.pcn == pcn), key=lambda p: p.period)

    def balance(self, pcn: int, account_no: str, period: int) -> tuple[int, int]:
        """(debit, credit) micros of one account in one period."""
        d, c = self.postings.get((pcn, account_no, period), (0, 0))
        return d, c

    def account_activity_summary(
        self, pcns: Sequence[int], period_start: int, period_end: int
    ) -> list[dict[str, str]]:
        """Data source 4814 (Account_Activity_Summary_xPCN_Get) for these PCNs and periods.

        One row per account existing by ``period_end``, ordered by account number, with
        the columns of :data:`ACTIVITY_COLUMNS` as strings. ``Debit`` and ``Credit`` sum
        the range; ``Beginning_Balance`` is the debit-minus-credit balance before
        ``period_start`` by the trial balance's year-to-date rule (a revenue or expense
        account counts from the first period of ``period_start``'s fiscal year, a balance
        sheet account from the beginning); ``Ending_Balance`` is beginning + debit -
        credit. With several PCNs an account number's amounts are summed across them
        (the ``xPCN`` in the name). A PCN the ledger does not know contributes nothing.
        """
        check_period(period_start)
        check_period(period_end)
        if period_start > period_end:
            raise LedgerError(f"@Period_Start {period_start} is after @Period_End {period_end}")
        rows: dict[str, dict[str, object]] = {}
        fiscal_start = period_start // 100 * 100 + 1
        for pcn in pcns:
            by_account = self._postings_by_account(pcn)
            for account in self.accounts_of(pcn):
                if account.start_period and account.start_period > period_end:
                    continue
                begin = debit = credit = 0
                for period, d, c in by_account.get(account.account_no, ()):
                    if period < period_start:
                        if not account.revenue_or_expense or period >= fiscal_start:
                            begin += d - c
                    elif period <= period_end:
                        debit += d
                        credit += c
                row = rows.setdefault(
                    account.account_no,
                    {"name": account.name, "type": account.category_type, "sums": [0, 0, 0]},
                )
                sums = row["sums"]
                assert isinstance(sums, list)
                sums[0] += begin
                sums[1] += debit
                sums[2] += credit
        out = []
        for account_no in sorted(rows):
            row = rows[account_no]
            begin, debit, credit = row["sums"]  # type: ignore[misc]  # the list built above
            out.append(
                {
                    "Account_No": account_no,
                    "Account_Name": str(row["name"]),
                    "Account_Type": str(row["type"]),
                    "Beginning_Balance": money(begin),
                    "Debit": money(debit),
                    "Credit": money(credit),
                    "Ending_Balance": money(begin + debit - credit),
                }
            )
        return out

    # --- the seeded ledger ------------------------------------------------------------

    @classmethod
    def seeded(
        cls, seed: int = 1, *, fiscal_start_month: int = 1, sub_cent: bool = False
    ) -> Ledger:
        """The demo's and tests' ledger: two PCNs, fiscal years 2021 to 2024.

        2021 and 2023 have a period 13; 2022 has twelve periods. Periods through 202404
        are closed, 202405 onwards open, with activity through 202406 (the "current"
        period). Account ``52500-000-0000`` (Tooling - Inserts) of PCN 123681 is new in
        202403. ``fiscal_start_month=7`` gives a July-to-June fiscal year instead;
        ``sub_cent`` gives every entry five decimals, as Plex keeps them.
        """
        return cls.generate(
            seed,
            pcns=(123681, 300758),
            first_year=2021,
            last_year=2024,
            thirteen=(2021, 2023),
            closed_through=202404,
            last_active=202406,
            fiscal_start_month=fiscal_start_month,
            new_accounts={123681: {"52500-000-0000": 202403}},
            sub_cent=sub_cent,
        )

    @classmethod
    def generate(
        cls,
        seed: int,
        *,
        pcns: Sequence[int],
        first_year: int,
        last_year: int,
        thirteen: Iterable[int] = (),
        closed_through: int,
        last_active: int,
        fiscal_start_month: int = 1,
        new_accounts: dict[int, dict[str, int]] | None = None,
        extra_accounts: int = 0,
        entries_per_period: int = 40,
        sub_cent: bool = False,
    ) -> Ledger:
        """A random but balanced ledger; ``extra_accounts`` adds expense sub-accounts;
        ``sub_cent`` draws amounts with five decimals (0.00001 steps) instead of cents.

        Years before ``last_year`` are closed into Retained Earnings. Benchmarks use
        ``extra_accounts`` to reach a million balance rows.
        """
        rng = random.Random(seed)

        def amount(low_cents: int, high_cents: int) -> int:
            if sub_cent:  # five decimals: steps of ten micros
                return rng.randint(low_cents * 1000, high_cents * 1000) * 10
            return rng.randint(low_cents, high_cents) * CENT

        ledger = cls()
        new_accounts = new_accounts or {}
        thirteen = tuple(thirteen)
        key = 1
        for pcn in pcns:
            for row in CHART:
                number, name, ctype, cat_no, cat_name, sub_no, sub_name = row
                start = new_accounts.get(pcn, {}).get(number, 0)
                ledger.accounts.append(
                    Account(
                        pcn, number, name, ctype, cat_no, cat_name, sub_no, sub_name, key, start
                    )
                )
                key += 1
            for i in range(extra_accounts):
                number = f"7{i // 10000:01d}{i % 10000:04d}-000-0000"
                ledger.accounts.append(
                    Account(
                        pcn,
                        number,
                        f"Cost center {i}",
                        "Expense",
                        7000,
                        "Operating",
                        7100,
                        "Cost centers",
                        key,
                    )
                )
                key += 1
            ledger.periods += fiscal_calendar(
                pcn,
                first_year,
                last_year,
                thirteen=thirteen,
                fiscal_start_month=fiscal_start_month,
                closed_through=closed_through,
                first_key=len(ledger.periods) + 1,
            )
        for pcn in pcns:
            extra = [a.account_no for a in ledger.accounts_of(pcn) if a.category_no == 7000]
            starts = {a.account_no: a.start_period for a in ledger.accounts_of(pcn)}
            for p in ledger.periods_of(pcn):
                if p.period > last_active:
                    break
                for _ in range(entries_per_period if p.fiscal_order <= 12 else 3):
                    debit, credit = rng.choice(FLOWS)
                    if p.fiscal_order == 13:  # adjustment period: accruals only
                        debit, credit = "53000-000-0000", "21000-000-0000"
                    if starts.get(debit, 0) > p.period or starts.get(credit, 0) > p.period:
                        continue
                    ledger.post_micros(pcn, p.period, debit, credit, amount(5_00, 250_000_00))
                for number in extra:
                    ledger.post_micros(
                        pcn, p.period, number, "20100-000-0000", amount(1_00, 5_000_00)
                    )
            ledger.close_years(pcn, range(first_year, last_year), RETAINED_EARNINGS)
        return ledger
