"""``fast_insert``'s constants and differences land exactly as bound values would.

The big TB loads write the per-row constant columns as literals and let SQLite compute
the balances; these tests hold the stored rows equal to what plain binding stores, on
SQLite (numbered parameters) and on PostgreSQL (differences computed in Python), with the
strings that need escaping.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.db.warehouse import TBAccountPeriodBalance
from runner.tb.common import fast_insert

ROWS = [("4000-000", 1250, 50, 99_999_999_999, 0), ("5000-'x'", 0, 7, 3, 10**12)]
CONSTANTS: dict[str, int | str] = {
    "pcn": 123681,
    "period": 202413,
    "period_display": "13-2024",
    "closed": True,
    "source_update": "07-01 O'Brien'); --",  # quoted and escaped
    "fence": 42,
}
DIFFERENCES = {
    "balance_cents": ("debit_cents", "credit_cents"),
    "ytd_balance_cents": ("ytd_debit_cents", "ytd_credit_cents"),
}
COLUMNS = ("account_no", "debit_cents", "credit_cents", "ytd_debit_cents", "ytd_credit_cents")


def _stored(engine: Engine) -> list[tuple[object, ...]]:
    t = TBAccountPeriodBalance
    with Session(engine) as s:
        return [
            tuple(r)
            for r in s.execute(
                select(
                    t.pcn,
                    t.period,
                    t.account_no,
                    t.period_display,
                    t.debit_cents,
                    t.credit_cents,
                    t.balance_cents,
                    t.ytd_debit_cents,
                    t.ytd_credit_cents,
                    t.ytd_balance_cents,
                    t.closed,
                    t.source_update,
                    t.fence,
                ).order_by(t.account_no)
            )
        ]


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_constants_and_differences_store_what_binding_would(
    db: str, request: pytest.FixtureRequest
) -> None:
    engine: Engine = request.getfixturevalue("sqlite_engine" if db == "sqlite" else "pg_engine")
    with Session(engine) as s, s.begin():
        written = fast_insert(
            s,
            TBAccountPeriodBalance,
            COLUMNS,
            iter(ROWS),
            constants=CONSTANTS,
            differences=DIFFERENCES,
        )
    assert written == len(ROWS)
    c = CONSTANTS
    expected = [
        (
            c["pcn"],
            c["period"],
            account,
            c["period_display"],
            debit,
            credit,
            debit - credit,
            ytd_debit,
            ytd_credit,
            ytd_debit - ytd_credit,
            True,
            c["source_update"],
            c["fence"],
        )
        for account, debit, credit, ytd_debit, ytd_credit in ROWS
    ]
    assert _stored(engine) == expected


def test_a_constant_of_another_type_is_refused(sqlite_engine: Engine) -> None:
    with Session(sqlite_engine) as s, pytest.raises(TypeError, match="not float"):
        wrong: dict[str, Any] = {"fence": 1.5}
        fast_insert(s, TBAccountPeriodBalance, COLUMNS, iter(ROWS), constants=wrong)
