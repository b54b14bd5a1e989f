"""The migration builds the schema the models describe, on PostgreSQL and on SQLite."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import IntegrityError

import core.db
from core.config.infra import DatabaseConfig
from core.db import current_revision, make_engine, session_factory, upgrade
from core.db.engine import alembic_config
from core.db.schema import Base, Episode, MachineRow
from tests.conftest import REPO


def _diff(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, Base.metadata))


@pytest.mark.parametrize("engine_fixture", ["pg_engine", "sqlite_engine"])
def test_migrated_schema_matches_models(
    engine_fixture: str, request: pytest.FixtureRequest
) -> None:
    engine: Engine = request.getfixturevalue(engine_fixture)
    assert current_revision(engine) is not None
    tables = set(inspect(engine).get_table_names())
    assert {"tickets", "episodes", "silences", "report_requests", "step_runs"} <= tables
    # Models edited without `make migration` show up here as differences.
    assert _diff(engine) == []


def test_upgrade_is_idempotent(pg_engine: Engine) -> None:
    before = current_revision(pg_engine)
    upgrade(pg_engine)
    assert current_revision(pg_engine) == before


def test_episode_replay_hits_the_unique_constraint(pg_engine: Engine) -> None:

    sessions = session_factory(pg_engine)
    now = datetime.now(UTC)

    def episode() -> Episode:
        return Episode(
            fingerprint="f" * 16,
            occurrence=1,
            machine_id="cnc101",
            rule="r",
            rule_type="counter_jump",
            started_at=now,
            last_seen_at=now,
        )

    with sessions.begin() as s:
        s.add(episode())
    with pytest.raises(IntegrityError), sessions.begin() as s:
        s.add(episode())


def test_db_upgrade_command_migrates_and_syncs_machines(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"database: {{url: 'sqlite:///{db}'}}\n"
        "machines:\n  - {id: m1, pcn: 1, workcenter_key: 11, workcenter_code: c1}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "repsys", "-c", str(cfg), "db", "upgrade"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "1 machines synced" in result.stdout
    engine = make_engine(DatabaseConfig(url=f"sqlite:///{db}"))
    with session_factory(engine)() as s:
        rows = s.scalars(select(MachineRow)).all()
    engine.dispose()
    assert [(r.id, r.workcenter_key, r.active) for r in rows] == [("m1", 11, True)]


def test_every_table_is_registered() -> None:
    # core.db imports the warehouse module, so Alembic sees its tables too.
    assert core.db.Base is Base
    assert "tickets" in Base.metadata.tables


@pytest.mark.parametrize("url_fixture", ["pg_url", "sqlite_url"])
def test_tb_amounts_migrate_from_cents_to_exact_micros_and_back(
    url_fixture: str, request: pytest.FixtureRequest
) -> None:
    """0002 (issue 21): stored cents become micros exactly; a downgrade rounds micros
    back to cents half up, away from zero, as the TB rounds."""
    engine = make_engine(DatabaseConfig(url=request.getfixturevalue(url_fixture)))
    try:
        upgrade(engine, "0001")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO tb_balances VALUES (1, 202401, 'A', 12345, -7, 3)"))
            conn.execute(
                text("INSERT INTO tb_open_activity VALUES (1, 202405, 'A', 1, 2, 3, -4, 3)")
            )
            conn.execute(
                text(
                    "INSERT INTO tb_account_period_balance VALUES (1, 202401, 'A', '2024-01', "
                    "5, 2, 3, 105, -20, 125, TRUE, 'u', 3)"
                )
            )
        upgrade(engine)
        with engine.begin() as conn:
            assert conn.execute(
                text("SELECT debit_micros, credit_micros FROM tb_balances")
            ).one() == (123_450_000, -70_000)
            assert conn.execute(
                text(
                    "SELECT beginning_micros, debit_micros, credit_micros, ending_micros "
                    "FROM tb_open_activity"
                )
            ).one() == (10_000, 20_000, 30_000, -40_000)
            assert conn.execute(
                text("SELECT ytd_debit_micros, ytd_credit_micros FROM tb_account_period_balance")
            ).one() == (1_050_000, -200_000)
            # Sub-cent amounts a run stored since: half up, away from zero, on the way back.
            conn.execute(text("UPDATE tb_balances SET debit_micros = 15000, credit_micros = -5000"))
        command.downgrade(alembic_config(engine), "0001")
        with engine.connect() as conn:
            assert conn.execute(
                text("SELECT debit_cents, credit_cents FROM tb_balances")
            ).one() == (2, -1)
            assert conn.execute(
                text("SELECT ytd_debit_cents FROM tb_account_period_balance")
            ).one() == (105,)
    finally:
        engine.dispose()


def _tb_balances_sql(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(
                text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'tb_balances'")
            ).scalar_one()
        )


@pytest.mark.parametrize("url_fixture", ["pg_url", "sqlite_url"])
def test_tb_balances_rebuilt_without_rowid_on_sqlite_only(
    url_fixture: str, request: pytest.FixtureRequest
) -> None:
    """0004 (decision 0490): on SQLite the table is rebuilt WITHOUT ROWID
    with its rows and key, and back on downgrade; elsewhere the migration changes nothing."""
    engine = make_engine(DatabaseConfig(url=request.getfixturevalue(url_fixture)))
    row = (1, 202401, "A", 12_345, -7, 3)
    select_row = text("SELECT pcn, period, account_no, debit_micros, credit_micros, fence "
                      "FROM tb_balances")  # fmt: skip
    try:
        upgrade(engine, "0003")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO tb_balances (pcn, period, account_no, debit_micros, "
                    "credit_micros, fence) VALUES (1, 202401, 'A', 12345, -7, 3)"
                )
            )
        sqlite = engine.dialect.name == "sqlite"
        if sqlite:
            assert "WITHOUT ROWID" not in _tb_balances_sql(engine)
        before = inspect(engine).get_pk_constraint("tb_balances")
        upgrade(engine)
        with engine.begin() as conn:
            assert tuple(conn.execute(select_row).one()) == row
            with pytest.raises(IntegrityError), conn.begin_nested():
                # The primary key still holds after the rebuild.
                conn.execute(
                    text(
                        "INSERT INTO tb_balances (pcn, period, account_no, debit_micros, "
                        "credit_micros, fence) VALUES (1, 202401, 'A', 1, 1, 4)"
                    )
                )
        assert inspect(engine).get_pk_constraint("tb_balances") == before
        if sqlite:
            assert _tb_balances_sql(engine).rstrip().endswith("WITHOUT ROWID")
        assert _diff(engine) == []
        command.downgrade(alembic_config(engine), "0003")
        with engine.connect() as conn:
            assert tuple(conn.execute(select_row).one()) == row
        if sqlite:
            assert "WITHOUT ROWID" not in _tb_balances_sql(engine)
    finally:
        engine.dispose()


def test_models_create_tb_balances_without_rowid_on_sqlite(tmp_path: Path) -> None:
    """A database made from the models (tests, ``create_all``) matches the migrated one."""
    engine = make_engine(DatabaseConfig(url=f"sqlite:///{tmp_path / 'm.db'}"))
    try:
        Base.metadata.create_all(engine)
        assert _tb_balances_sql(engine).rstrip().endswith("WITHOUT ROWID")
    finally:
        engine.dispose()
