"""Timestamps are instants on every database: SQLite compares them in UTC too."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select

from core.db import session_factory
from core.db.schema import Episode

CHICAGO = ZoneInfo("America/Chicago")


@pytest.mark.parametrize("engine_fixture", ["sqlite_engine", "pg_engine"])
def test_plant_time_bounds_compare_as_instants(
    engine_fixture: str, request: pytest.FixtureRequest
) -> None:
    engine: Engine = request.getfixturevalue(engine_fixture)
    sessions = session_factory(engine)
    breakdown = datetime(2024, 7, 8, 14, 30, tzinfo=UTC)  # 09:30 CDT
    with sessions.begin() as s:
        s.add(
            Episode(
                fingerprint="cnc101|down|",
                machine_id="cnc101",
                rule="down",
                rule_type="downtime",
                evidence={},
                started_at=breakdown.astimezone(CHICAGO),  # stored as the same instant
                last_seen_at=breakdown,
            )
        )
    shift_start = datetime(2024, 7, 8, 6, 0, tzinfo=CHICAGO)
    shift_end = datetime(2024, 7, 8, 14, 0, tzinfo=CHICAGO)
    with sessions() as s:
        inside = s.scalars(
            select(Episode.started_at).where(
                Episode.started_at >= shift_start, Episode.started_at < shift_end
            )
        ).all()
        before_0915 = s.scalars(
            select(Episode.id).where(
                Episode.started_at < datetime(2024, 7, 8, 9, 15, tzinfo=CHICAGO)
            )
        ).all()
    assert inside == [breakdown]
    assert inside[0].tzinfo is not None and inside[0].utcoffset() == breakdown.utcoffset()
    assert before_0915 == []
