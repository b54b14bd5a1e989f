"""The golden trial balance on every database RepSys supports as a warehouse.

The same golden ledger (``test_golden_tb.py``) through ODBC and data source 4814, with the
runner's tables and the warehouse on SQLite, PostgreSQL and MariaDB (the MySQL family,
through PyMySQL): the same lines, debits equal to credits, on each.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import Engine, select

from core.db import session_factory
from core.db.warehouse import TBAccountPeriodBalance
from runner.tb.report import COLUMNS
from tests.runner.conftest import Accounting, Harness
from tests.runner.test_golden_tb import PCN, PERIODS, expected_lines, golden_ledger

ENGINES = {"sqlite": "sqlite_engine", "postgresql": "pg_engine", "mariadb": "mysql_engine"}


@pytest.mark.parametrize("db", list(ENGINES))
def test_golden_trial_balance_on_each_database(
    db: str,
    request: pytest.FixtureRequest,
    make_accounting: Callable[..., Accounting],
    runner_config: Callable[..., object],
    make_runner: Callable[..., Harness],
) -> None:
    engine: Engine = request.getfixturevalue(ENGINES[db])
    assert engine.dialect.name == {"mariadb": "mysql"}.get(db, db)
    if db == "mariadb":
        assert getattr(engine.dialect, "is_mariadb", False)  # the server, not only the family
    accounting = make_accounting(golden_ledger())
    cfg = runner_config(accounting, runner={"tb": {"pcns": [PCN]}})
    harness = make_runner(
        cfg,
        db=session_factory(engine),
        clock=lambda: datetime(2024, 7, 7, 9, 30, tzinfo=UTC),
    )

    done = harness.run_tb(202212, 202403)

    assert done.state == "completed", done.error
    assert done.result_path is not None
    with open(done.result_path[: -len(".xlsx")] + ".csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == COLUMNS
    got = {(int(r[0].replace("-", "")), r[4]): (Decimal(r[6]), Decimal(r[7])) for r in rows[1:]}
    assert got == expected_lines()
    for period in PERIODS:
        lines = [v for (p, _), v in got.items() if p == period]
        assert sum(c for c, _ in lines) == 0
        assert sum(y for _, y in lines) == 0
    # The warehouse rows are on that database, in exact cents: every period balances.
    with harness.sessions() as s:
        stored = s.scalars(
            select(TBAccountPeriodBalance).where(TBAccountPeriodBalance.pcn == PCN)
        ).all()
    assert {r.period for r in stored} >= set(PERIODS)
    for period in PERIODS:
        assert sum(r.balance_cents for r in stored if r.period == period) == 0
