"""The escalation sweep on a real PostgreSQL: levels written in working time, only rising."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from core.config.machines import Machine
from core.config.notify import CalendarConfig, EscalationConfig, EscalationPolicy, LevelSpec
from core.db.engine import session_factory
from core.db.schema import Ticket, TicketEvent
from core.outbox import add_ticket
from notify.escalation import calendar_from_config
from notify.sweep import EscalationSweep

TZ = ZoneInfo("America/Chicago")
CNC103 = Machine(id="cnc103", pcn=123681, workcenter_key=61324, workcenter_code="cnc103")


def _file(sessions, *, at: datetime, category: str = "tooling", severity: str = "high") -> int:
    with sessions() as s, s.begin():
        t = add_ticket(
            s,
            machine=CNC103,
            source="rule",
            title="Tool 1 worn",
            description="d",
            category=category,
            severity=severity,
            now=at,
        )
        s.execute(
            update(Ticket)
            .where(Ticket.id == t.id)
            .values(state="filed", filed_at=at, plex_number="WR1")
        )
        return t.id


def _levels(sessions) -> dict[int, int]:
    with sessions() as s:
        return {t.id: t.escalation_level for t in s.scalars(select(Ticket))}


def _events(sessions, ticket_id: int) -> list[str]:
    with sessions() as s:
        rows = s.scalars(
            select(TicketEvent).where(TicketEvent.ticket_id == ticket_id).order_by(TicketEvent.id)
        )
        return [f"{e.event}:{e.detail}" for e in rows]


def test_friday_night_ticket_is_level_2_on_monday(pg_engine: Engine) -> None:
    sessions = session_factory(pg_engine)
    cal = calendar_from_config(CalendarConfig(), "America/Chicago")
    cfg = EscalationConfig(
        policies=[
            EscalationPolicy(category=["quality"], levels=[LevelSpec(after_filed_h=100)]),
            EscalationPolicy(levels=[LevelSpec(after_filed_h=4), LevelSpec(after_filed_h=8)]),
        ]
    )
    friday = datetime(2026, 12, 4, 22, 55, tzinfo=TZ)
    tool = _file(sessions, at=friday)
    quality = _file(sessions, at=friday, category="quality")
    sweep = EscalationSweep(cfg, cal, sessions)

    assert sweep.run_once(datetime(2026, 12, 5, 12, 0, tzinfo=TZ))  # Saturday noon
    assert _levels(sessions) == {tool: 1, quality: 0}
    assert sweep.run_once(datetime(2026, 12, 6, 23, 0, tzinfo=TZ)) == []  # Sunday night
    assert _levels(sessions)[tool] == 1
    [raised] = sweep.run_once(datetime(2026, 12, 7, 7, 0, tzinfo=TZ))  # Monday 07:00
    assert (raised.ticket_id, raised.level) == (tool, 2)
    assert _events(sessions, tool)[-2:] == ["escalated:level 1", "escalated:level 2"]
    # A second sweep at the same moment writes nothing again.
    assert sweep.run_once(datetime(2026, 12, 7, 7, 0, tzinfo=TZ)) == []


def test_status_change_holds_back_levels_that_need_it_and_levels_never_fall(
    pg_engine: Engine,
) -> None:
    sessions = session_factory(pg_engine)
    always = CalendarConfig(
        shifts=[{"name": "all", "start": "00:00", "end": "00:00"}],
        workdays=["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
    )
    cal = calendar_from_config(always, "UTC")
    cfg = EscalationConfig(
        policies=[
            EscalationPolicy(
                levels=[LevelSpec(after_filed_h=1), LevelSpec(after_filed_h=2, after_status_h=2)]
            )
        ]
    )
    t0 = datetime(2026, 1, 5, 8, tzinfo=ZoneInfo("UTC"))
    ticket = _file(sessions, at=t0)
    with sessions() as s, s.begin():
        s.add(
            TicketEvent(
                ticket_id=ticket,
                at=t0 + timedelta(minutes=90),
                event="status",
                detail="In Progress",
            )
        )
    sweep = EscalationSweep(cfg, cal, sessions)
    sweep.run_once(t0 + timedelta(hours=3))
    assert _levels(sessions)[ticket] == 1  # 1.5 h since Plex moved it: not yet level 2
    sweep.run_once(t0 + timedelta(hours=3, minutes=30))
    assert _levels(sessions)[ticket] == 2
    # Another writer's higher level stays (the rules' repeat escalation, an operator).
    with sessions() as s, s.begin():
        s.execute(update(Ticket).where(Ticket.id == ticket).values(escalation_level=5))
    assert sweep.run_once(t0 + timedelta(hours=4)) == []
    assert _levels(sessions)[ticket] == 5
