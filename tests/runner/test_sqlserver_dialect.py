"""SQL Server / Azure SQL: what can be checked without a server (none runs on Linux here).

1. Every table and index of the schema renders as SQL Server DDL.
2. Every statement the runner issues during the golden trial balance (captured from the
   engine while the TB runs on SQLite) compiles with the SQL Server dialect, with bound
   parameters; textual SQL is listed, since no dialect can translate it.
3. The ``mssql+pyodbc`` URL becomes the ODBC connection string the driver would be given.

Not run: a connection, a migration or a TB on a SQL Server (see runner/README.md).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.dialects import mssql
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.elements import TextClause

import core.db  # noqa: F401 - registers every table
from core.db.schema import Base
from tests.runner.conftest import Accounting, Harness
from tests.runner.test_golden_tb import PCN, golden_ledger


def test_every_table_renders_as_sql_server_ddl() -> None:
    dialect = mssql.dialect()
    for table in Base.metadata.sorted_tables:
        ddl = str(CreateTable(table).compile(dialect=dialect))
        assert ddl.startswith(f"\nCREATE TABLE {table.name} (")
        for index in table.indexes:
            str(CreateIndex(index).compile(dialect=dialect))


def test_every_statement_of_a_tb_run_compiles_for_sql_server(
    sqlite_engine: Engine,
    make_accounting: Callable[..., Accounting],
    runner_config: Callable[..., object],
    make_runner: Callable[..., Harness],
) -> None:
    seen: list[ClauseElement] = []

    def capture(_conn: Any, clause: Any, *_: Any) -> None:
        if isinstance(clause, ClauseElement):
            seen.append(clause)

    event.listen(sqlite_engine, "before_execute", capture)
    try:
        accounting = make_accounting(golden_ledger())
        cfg = runner_config(accounting, runner={"tb": {"pcns": [PCN]}})
        harness = make_runner(cfg, clock=lambda: datetime(2024, 7, 7, 9, 30, tzinfo=UTC))
        assert harness.run_tb(202212, 202403).state == "completed"
    finally:
        event.remove(sqlite_engine, "before_execute", capture)

    dialect = mssql.dialect()
    compiled = textual = 0
    for clause in seen:
        if isinstance(clause, TextClause):
            textual += 1
            continue
        sql = str(clause.compile(dialect=dialect))
        assert "LIMIT " not in sql  # SQL Server pages with TOP / OFFSET … FETCH
        compiled += 1
    assert compiled > 50
    # The runner writes no hand-written SQL: everything goes through SQLAlchemy Core/ORM.
    assert textual == 0


def test_the_pyodbc_url_becomes_an_odbc_connection_string() -> None:
    url = make_url(
        "mssql+pyodbc://repsys@plant-sql.database.windows.net:1433/repsys"
        "?driver=ODBC+Driver+18+for+SQL+Server&Encrypt=yes"
    )
    dialect = mssql.dialect()  # pyodbc is the default driver of the mssql dialect
    args, _ = dialect.create_connect_args(url.set(password="s3cret"))
    text = args[0]
    assert "DRIVER={ODBC Driver 18 for SQL Server}" in text
    assert "Server=plant-sql.database.windows.net,1433" in text
    assert "Database=repsys" in text and "UID=repsys" in text and "Encrypt=yes" in text
