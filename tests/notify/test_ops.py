"""Operations alerts reach the admin receiver once per subject (or hour), on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from core import deliveries
from core.config import parse_config
from core.config.machines import Machine
from core.db.engine import session_factory
from core.db.schema import NotifyDelivery, Ticket, utcnow
from core.outbox import add_ticket
from notify.ops import OpsCheck
from notify.render import render

CFG = parse_config(
    {
        "notify": {
            "receivers": [
                {"name": "supervisors", "email": {"to": ["sup@plant.example"]}},
                {"name": "it", "email": {"to": ["it@plant.example"]}},
            ],
            "route": {"receiver": "supervisors"},
            "admin_receiver": "it",
            "outbox": {"max_age_s": 600},
        }
    }
)


def _admin_alerts(sessions) -> list[str]:
    with sessions() as s:
        rows = s.scalars(
            select(NotifyDelivery)
            .where(NotifyDelivery.receiver == "it")
            .order_by(NotifyDelivery.id)
        )
        return [r.payload["notices"][0]["alertname"] for r in rows]


def test_dead_delivery_stuck_outbox_and_plex_refusing_reach_the_admin_once(
    pg_engine: Engine,
) -> None:
    sessions = session_factory(pg_engine)
    now = utcnow()
    if now.minute >= 50:
        # Alerts repeat once per clock hour: keep "now" and "now + 5 min" in one hour
        # (the test failed when it ran at 15:59).
        now += timedelta(minutes=11)
    with sessions() as s, s.begin():
        for i in range(2):
            deliveries.enqueue(
                s,
                key=f"k{i}",
                receiver="supervisors",
                integration="email",
                items=[deliveries.Item(f"{i}:filed:1")],
                payload={},
                now=now - timedelta(hours=1),
            )
        s.execute(
            update(NotifyDelivery)
            .where(NotifyDelivery.key == "k0")
            .values(state="dead", last_error_reason="smtp_refused", last_error="550 no such user")
        )
        machine = Machine(id="cnc103", pcn=1, workcenter_key=2, workcenter_code="cnc103")
        t = add_ticket(s, machine=machine, source="rule", title="t", description="d")
        s.execute(
            update(Ticket).where(Ticket.id == t.id).values(attempts=4, last_error_reason="auth")
        )
    ops = OpsCheck(CFG.notify, sessions)
    assert sorted(a.name for a in ops.run_once(now)) == [
        "delivery_dead",
        "outbox_stuck",
        "plex_refusing",
    ]
    assert ops.run_once(now + timedelta(minutes=5)) == []  # the same subjects, the same hour
    assert sorted(_admin_alerts(sessions)) == ["delivery_dead", "outbox_stuck", "plex_refusing"]
    # Still true an hour later: the conditions are reminded, the dead delivery is not.
    again = ops.run_once(now + timedelta(hours=1, minutes=1))
    assert sorted(a.name for a in again) == ["outbox_stuck", "plex_refusing"]
    with sessions() as s:
        row = s.scalars(select(NotifyDelivery).where(NotifyDelivery.receiver == "it")).first()
        assert row is not None
        message = render(row.payload)
    assert message.subject.startswith("RepSys operations: ")


def test_the_admins_own_dead_deliveries_raise_no_alert(pg_engine: Engine) -> None:
    sessions = session_factory(pg_engine)
    with sessions() as s, s.begin():
        deliveries.enqueue(
            s, key="a", receiver="it", integration="email", items=[deliveries.Item("x")], payload={}
        )
        s.execute(update(NotifyDelivery).values(state="dead", last_error_reason="smtp_refused"))
    assert OpsCheck(CFG.notify, sessions).run_once() == []
