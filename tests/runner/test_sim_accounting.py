"""The simulated accounting data: a balanced seeded ledger, data source 4814's answer, and
the same ledger read back through the real SQLite ODBC driver as Plex-named views."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pyodbc
import pytest

from sim.accounting.errors import LedgerError
from sim.accounting.ledger import ACTIVITY_COLUMNS, Ledger
from sim.accounting.odbc import build_database, connection_string


@pytest.fixture(scope="module")
def ledger() -> Ledger:
    return Ledger.seeded()


def test_every_period_balances_and_the_calendar_is_as_documented(ledger: Ledger) -> None:
    for pcn in ledger.pcns:
        for period in ledger.periods_of(pcn):
            sums = [
                ledger.balance(pcn, a.account_no, period.period) for a in ledger.accounts_of(pcn)
            ]
            assert sum(d for d, _ in sums) == sum(c for _, c in sums)
    periods = [p.period for p in ledger.periods_of(123681)]
    assert 202113 in periods and 202213 not in periods and 202313 in periods
    assert periods[0] == 202101 and periods[-1] == 202412
    assert [p.closed for p in ledger.periods_of(123681) if p.period in (202404, 202405)] == [
        True,
        False,
    ]
    assert Ledger.seeded() == ledger  # the seed makes it the same every time


def test_data_source_4814_columns_and_rules(ledger: Ledger) -> None:
    rows = ledger.account_activity_summary([123681], 202401, 202401)
    assert all(tuple(r) == ACTIVITY_COLUMNS for r in rows)
    assert all(isinstance(v, str) for r in rows for v in r.values())
    by_no = {r["Account_No"]: r for r in rows}
    assert "52500-000-0000" not in by_no  # new in 202403: not there yet in 202401
    assert "52500-000-0000" in {
        r["Account_No"] for r in ledger.account_activity_summary([123681], 202403, 202403)
    }
    sales = by_no["40000-000-0000"]
    assert sales["Beginning_Balance"] == "0.00"  # revenue starts again in period 01
    cash = by_no["10000-000-0000"]
    assert cash["Beginning_Balance"] != "0.00"  # balance sheet carries over
    for r in rows:
        begin, debit, credit, end = (
            int(r[k].replace(".", ""))
            for k in ("Beginning_Balance", "Debit", "Credit", "Ending_Balance")
        )
        assert end == begin + debit - credit
    both = {
        r["Account_No"]: r
        for r in ledger.account_activity_summary([123681, 300758], 202401, 202401)
    }
    other = {r["Account_No"]: r for r in ledger.account_activity_summary([300758], 202401, 202401)}
    assert int(both["10000-000-0000"]["Debit"].replace(".", "")) == int(
        cash["Debit"].replace(".", "")
    ) + int(other["10000-000-0000"]["Debit"].replace(".", ""))
    assert ledger.account_activity_summary([999999], 202401, 202401) == []
    with pytest.raises(LedgerError, match="is after"):
        ledger.account_activity_summary([123681], 202402, 202401)
    with pytest.raises(LedgerError, match="PP from 01 to 13"):
        ledger.account_activity_summary([123681], 202414, 202414)


def test_the_ledger_through_a_real_odbc_driver(ledger: Ledger, tmp_path: Path) -> None:
    path = build_database(ledger, tmp_path / "accounting.db")
    conn = pyodbc.connect(connection_string(path), autocommit=True)
    try:
        cur = conn.cursor()
        names = {row.table_name for row in cur.tables(tableType="VIEW")}
        assert {
            "accounting_v_Account_e",
            "accounting_v_Balance_e",
            "accounting_v_Period_e",
            "accounting_v_Category_Type",
            "accounting_v_Category_Account_e",
        } <= names
        cur.execute(
            "SELECT COUNT(*) FROM accounting_v_Account_e WHERE plexus_customer_no = ?", 123681
        )
        assert cur.fetchone()[0] == len(ledger.accounts_of(123681))
        cur.execute(
            "SELECT DISTINCT period FROM accounting_v_Balance_e "
            "WHERE plexus_customer_no = ? ORDER BY period DESC",
            123681,
        )
        assert cur.fetchone()[0] == 202404  # closed periods only: open ones are 4814's
        cur.execute(
            "SELECT debit, credit FROM accounting_v_Balance_e WHERE "
            "plexus_customer_no = ? AND account_no = ? AND period = ?",
            123681,
            "10000-000-0000",
            202401,
        )
        debit, credit = cur.fetchone()
        d, c = ledger.balance(123681, "10000-000-0000", 202401)
        assert (round(debit * 1_000_000), round(credit * 1_000_000)) == (d, c)
        cur.execute(
            "SELECT revenue_or_expense FROM accounting_v_Category_Type "
            "WHERE category_type = 'Expense'"
        )
        assert cur.fetchone()[0] == 1
    finally:
        conn.close()


@pytest.mark.parametrize(("amounts", "stored"), [("real", "real"), ("text", "text")])
def test_the_build_command_types_amounts_and_draws_five_decimals(
    amounts: str, stored: str, tmp_path: Path
) -> None:
    """``repsys sim accounting build --amounts ... --sub-cent``: the same ledger as
    ``Ledger.seeded(sub_cent=True)``, its balances stored as asked."""
    path = tmp_path / "accounting.db"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sim.accounting",
            "build",
            str(path),
            "--amounts",
            amounts,
            "--sub-cent",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == connection_string(path)
    ledger = Ledger.seeded(sub_cent=True)
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT pcn, account_no, period, typeof(debit), debit, credit FROM balance"
        ).fetchall()
    assert {r[3] for r in rows} == {stored}
    got = {(pcn, a, p): (_micros(d), _micros(c)) for pcn, a, p, _, d, c in rows}
    assert got == {k: tuple(v) for k, v in ledger.postings.items()}
    assert any(d % 10_000 for d, _ in got.values())  # sub-cent amounts came through


def _micros(value: float | str) -> int:
    return int(Decimal(repr(value) if isinstance(value, float) else value) * 1_000_000)
