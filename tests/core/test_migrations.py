"""The migration builds the schema the models describe, on PostgreSQL and on SQLite."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, select
from sqlalchemy.exc import IntegrityError

import core.db
from core.config.infra import DatabaseConfig
from core.db import current_revision, make_engine, session_factory, upgrade
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
