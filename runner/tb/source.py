"""Where the trial balance reads Plex: ODBC views (closed periods) and data source 4814.

:class:`AccountingSource` and :class:`DataSourceClient` are the seams: the runner opens
the real ODBC source with pyodbc (:class:`OdbcAccountingSource`) and calls data source
4814 through ``plex.client.PlexClient``; both reach the steps that read them as
:class:`TbSources`, given to their constructors (``runner/registry.py``), and unit tests
pass other implementations there.

The ODBC queries read the views production reads (``accounting_v_Account_e``,
``accounting_v_Category_Account_e``, ``accounting_v_Category_Type``,
``accounting_v_Period_e``, ``accounting_v_Balance_e``), by the column names documented in
``sim/accounting/odbc.py``. Amounts become exact integer micros on the way in
(``runner/tb/money.py``); only the trial balance's lines are rounded to cents.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NamedTuple, Protocol

from runner.errors import SourceError
from runner.tb.money import arrow_micros

#: The longest account number the bulk read makes room for (the warehouse keeps 32).
_MAX_ACCOUNT_TEXT = 256


def _date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


@dataclass(frozen=True)
class SourceAccount:
    """An account with its category, as the ODBC views describe it."""

    account_no: str
    account_key: int
    name: str
    active: bool
    start_period: int
    category_type: str
    category_no: int
    category_name: str
    sub_category_no: int
    sub_category_name: str
    revenue_or_expense: bool


class BalanceBatch(NamedTuple):
    """Closed-period balances of one fetch, by column: the rows' account numbers,
    periods, debit micros and credit micros (exact: ``runner/tb/money.py``); a million
    rows travel as a few hundred of these, never as a Python object per row."""

    accounts: list[str]
    periods: list[int]
    debits: list[int]
    credits: list[int]


@dataclass(frozen=True)
class SourcePeriod:
    """One row of ``accounting_v_Period_e``."""

    period: int
    period_key: int
    fiscal_order: int
    display: str
    begin: date
    end: date
    closed: bool
    update_date: str


class AccountingSource(Protocol):
    """Plex's accounting views for one PCN at a time.

    Lifecycle: opened by a step through ``Services.accounting()``, used for a few
    queries, closed by the step. Every method raises :class:`SourceError` (reason
    ``odbc``) when Plex cannot be read.
    """

    def accounts(self, pcn: int) -> list[SourceAccount]:
        """Every account of the PCN, with category type and revenue/expense flag."""

    def periods(self, pcn: int) -> list[SourcePeriod]:
        """The PCN's fiscal calendar, ordered by period."""

    def balances(self, pcn: int, start: int, end: int) -> Iterator[BalanceBatch]:
        """The closed-period balances of ``start..end`` in batches, by column."""

    def close(self) -> None:
        """Release the connection."""


class ResultRows(Protocol):
    """A data source's answer, as :class:`plex.result.DataSourceResult` gives it."""

    @property
    def rows(self) -> list[dict[str, str]]:
        """The first result set; each row maps column names to strings, in column order."""


class DataSourceClient(Protocol):
    """The Plex SOAP client as the trial balance uses it (``plex.client.PlexClient``)."""

    def execute_data_source(self, key: int, params: Mapping[str, str]) -> ResultRows:
        """Run data source ``key``; raises ``plex.errors.PlexError`` on failure."""

    def close(self) -> None:
        """Release the HTTP session."""


_ACCOUNTS = """
SELECT a.account_no, a.account_key, a.account_name, a.active, a.start_period,
       c.category_type, c.category_no, c.category_name, c.sub_category_no,
       c.sub_category_name, t.revenue_or_expense
FROM accounting_v_Account_e a
LEFT JOIN accounting_v_Category_Account_e c
  ON c.plexus_customer_no = a.plexus_customer_no AND c.account_no = a.account_no
LEFT JOIN accounting_v_Category_Type t ON t.category_type = c.category_type
WHERE a.plexus_customer_no = ?
ORDER BY a.account_no
"""

_PERIODS = """
SELECT period, period_key, fiscal_order, period_display, begin_date, end_date,
       period_status, update_date
FROM accounting_v_Period_e
WHERE plexus_customer_no = ?
ORDER BY period
"""

#: The three integers are written into the text, not bound: a driver may stream a
#: statement without parameters but not one with them (SQLite's ODBC driver fetches a
#: bound statement's whole result before its first row: 2.2-2.9 s of a million rows
#: during which the warehouse load had nothing to do). ``:d`` takes ints only.
_BALANCES = """
SELECT account_no, period, debit, credit
FROM accounting_v_Balance_e
WHERE plexus_customer_no = {pcn:d} AND period BETWEEN {start:d} AND {end:d}
"""


class OdbcAccountingSource:
    """:class:`AccountingSource` over pyodbc, the balances over arrow-odbc's bulk fetch
    (DataDirect in production, SQLite in tests)."""

    fetch_size = 20_000

    def __init__(
        self, connection_string: str, *, password: str | None = None, timeout_s: int = 600
    ) -> None:
        import pyodbc  # noqa: PLC0415 - loaded only by processes that read Plex

        self._pyodbc = pyodbc
        conn_str = connection_string
        if password:
            conn_str = f"{conn_str.rstrip(';')};PWD={{{password}}}"
        self._conn_str = conn_str
        self._timeout_s = timeout_s
        try:
            self.conn = pyodbc.connect(conn_str, autocommit=True)
        except pyodbc.Error as exc:
            raise SourceError(f"cannot open the ODBC source: {exc}", reason="odbc") from exc
        self.conn.timeout = timeout_s

    def _query(self, sql: str, *args: Any) -> Any:
        try:
            cursor = self.conn.cursor()
            cursor.execute(sql, *args)
            return cursor
        except self._pyodbc.Error as exc:
            raise SourceError(f"ODBC query failed: {exc}", reason="odbc") from exc

    def accounts(self, pcn: int) -> list[SourceAccount]:
        out = []
        for row in self._query(_ACCOUNTS, pcn).fetchall():
            ctype = row.category_type or ""
            out.append(
                SourceAccount(
                    account_no=str(row.account_no),
                    account_key=int(row.account_key or 0),
                    name=str(row.account_name or ""),
                    active=bool(row.active),
                    start_period=int(row.start_period or 0),
                    category_type=ctype,
                    category_no=int(row.category_no or 0),
                    category_name=str(row.category_name or ""),
                    sub_category_no=int(row.sub_category_no or 0),
                    sub_category_name=str(row.sub_category_name or ""),
                    revenue_or_expense=bool(row.revenue_or_expense),
                )
            )
        return out

    def periods(self, pcn: int) -> list[SourcePeriod]:
        return [
            SourcePeriod(
                period=int(row.period),
                period_key=int(row.period_key),
                fiscal_order=int(row.fiscal_order),
                display=str(row.period_display),
                begin=_date(row.begin_date),
                end=_date(row.end_date),
                closed=bool(row.period_status),
                update_date=str(row.update_date),
            )
            for row in self._query(_PERIODS, pcn).fetchall()
        ]

    def balances(self, pcn: int, start: int, end: int) -> Iterator[BalanceBatch]:
        # arrow-odbc fetches whole blocks of rows per driver call into columns (pyodbc
        # asks the driver for one cell at a time: 4.0-4.7 s a million rows against
        # 2.6-2.9 s measured, the same values). Its own connection, on the same string.
        # arrow_odbc ships no type information; loaded only by the process that reads Plex.
        from arrow_odbc import (  # type: ignore[import-untyped]  # noqa: PLC0415
            Error,
            read_arrow_batches_from_odbc,
        )

        try:
            reader = read_arrow_batches_from_odbc(
                query=_BALANCES.format(pcn=pcn, start=start, end=end),
                connection_string=self._conn_str,
                batch_size=self.fetch_size,
                max_text_size=_MAX_ACCOUNT_TEXT,
                query_timeout_sec=self._timeout_s,
            )
            for batch in reader:
                accounts, periods, debits, credits = batch.columns
                yield BalanceBatch(
                    list(map(str, accounts.to_pylist())),
                    list(map(int, periods.to_pylist())),
                    arrow_micros(debits),
                    arrow_micros(credits),
                )
        except Error as exc:
            raise SourceError(f"ODBC read failed: {exc}", reason="odbc") from exc

    def close(self) -> None:
        with contextlib.suppress(self._pyodbc.Error):
            self.conn.close()


@dataclass
class TbSources:
    """The trial balance's sources, as factories: a step opens, uses and closes each.

    ``accounting`` opens Plex's ODBC source, ``data_source`` builds the Plex SOAP client
    for data source 4814; ``None`` when not configured (a step that needs it fails,
    naming the missing configuration).
    """

    accounting: Callable[[], AccountingSource] | None = None
    data_source: Callable[[], DataSourceClient] | None = None
