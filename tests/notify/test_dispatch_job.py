"""The live dispatcher on PostgreSQL: ticket events → routed, grouped deliveries, once."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from core.config import parse_config
from core.db.engine import session_factory
from core.db.schema import NotifyDelivery, NotifyDeliveryItem, Ticket, TicketEvent
from core.outbox import add_ticket
from notify.dispatch_job import DispatchJob, routed_event, shift_at
from notify.escalation import calendar_from_config
from notify.sweep import EscalationSweep
from tests.conftest import TEST_MACHINES

TZ = ZoneInfo("America/Chicago")

CONFIG = {
    "plant": {"timezone": "America/Chicago"},
    "machines": TEST_MACHINES,
    "notify": {
        "defaults": {"group_by": ["machine"], "group_wait_s": 30, "group_interval_s": 300},
        "receivers": [
            {"name": "maintenance", "email": {"to": ["mnt@plant.example"]}},
            {
                "name": "supervisors",
                "email": {"to": ["sup@plant.example"]},
                "teams": {"url": "http://127.0.0.1:9/x"},
            },
            {"name": "admin", "email": {"to": ["it@plant.example"]}},
        ],
        "admin_receiver": "admin",
        "route": {
            "receiver": "maintenance",
            "routes": [
                {
                    "matchers": ["event=escalated", "level=~[2-9]"],
                    "receiver": "supervisors",
                    "group_wait_s": 0,
                }
            ],
        },
        "escalation": {"policies": [{"levels": [{"after_filed_h": 1}, {"after_filed_h": 2}]}]},
    },
}


def _file(sessions, machine_id: str, at: datetime) -> int:
    cfg = parse_config(CONFIG)
    machine = cfg.machine(machine_id)
    assert machine is not None
    with sessions() as s, s.begin():
        t = add_ticket(
            s,
            machine=machine,
            source="rule",
            title="Tool 1 worn",
            description="d",
            category="tooling",
            now=at,
        )
        s.execute(
            update(Ticket)
            .where(Ticket.id == t.id)
            .values(state="filed", filed_at=at, plex_number="WR9")
        )
        s.add(TicketEvent(ticket_id=t.id, at=at, event="filed", detail="WR9"))
        return t.id


def _deliveries(sessions) -> list[tuple[str, str, list[str]]]:
    with sessions() as s:
        out = []
        for d in s.scalars(select(NotifyDelivery).order_by(NotifyDelivery.id)):
            items = s.scalars(
                select(NotifyDeliveryItem.item_key).where(NotifyDeliveryItem.delivery_id == d.id)
            )
            out.append((d.receiver, d.integration, sorted(items)))
        return out


def test_filing_then_escalation_reaches_maintenance_then_supervisors(pg_engine: Engine) -> None:
    sessions = session_factory(pg_engine)
    cfg = parse_config(CONFIG)
    cal = calendar_from_config(cfg.notify.calendar, cfg.plant.timezone)
    job = DispatchJob(cfg, cal, sessions)
    monday = datetime(2026, 12, 7, 8, 0, tzinfo=TZ)
    a = _file(sessions, "cnc103", monday)
    b = _file(sessions, "cnc103", monday + timedelta(seconds=5))

    assert job.run_once(monday + timedelta(seconds=10)).deliveries == 0  # group_wait
    cut = job.run_once(monday + timedelta(seconds=31))
    assert (cut.routed, cut.deliveries, cut.enqueued) == (0, 1, 1)
    assert _deliveries(sessions) == [
        (
            "maintenance",
            "email",
            sorted(
                [f"{a}:filed:{e}" for e in _event_ids(sessions, a, "filed")]
                + [f"{b}:filed:{e}" for e in _event_ids(sessions, b, "filed")]
            ),
        )
    ]
    # Nothing new: a second pass at the same moment cuts nothing (the checkpoint holds).
    assert job.run_once(monday + timedelta(seconds=31)).deliveries == 0

    sweep = EscalationSweep(cfg.notify.escalation, cal, sessions)
    for minutes in (61, 121):
        sweep.run_once(monday + timedelta(minutes=minutes))
        job.run_once(monday + timedelta(minutes=minutes))
    rows = _deliveries(sessions)[1:]
    # Level 1 stays with maintenance; level 2 goes to the supervisors, by e-mail and Teams.
    assert ("supervisors", "email", [f"{a}:escalated:2", f"{b}:escalated:2"]) in rows
    assert ("supervisors", "teams", [f"{a}:escalated:2", f"{b}:escalated:2"]) in rows
    assert [r for r in rows if r[0] == "maintenance"] == [
        ("maintenance", "email", sorted([f"{a}:escalated:1", f"{b}:escalated:1"]))
    ]


def _event_ids(sessions, ticket_id: int, event: str) -> list[int]:
    with sessions() as s:
        return list(
            s.scalars(
                select(TicketEvent.id).where(
                    TicketEvent.ticket_id == ticket_id, TicketEvent.event == event
                )
            )
        )


def test_a_dead_ticket_reaches_the_admin_receiver_only(pg_engine: Engine) -> None:
    sessions = session_factory(pg_engine)
    cfg = parse_config(CONFIG)
    cal = calendar_from_config(cfg.notify.calendar, cfg.plant.timezone)
    job = DispatchJob(cfg, cal, sessions)
    at = datetime(2026, 12, 7, 8, 0, tzinfo=TZ)
    with sessions() as s, s.begin():
        machine = cfg.machine("cnc101")
        assert machine is not None
        t = add_ticket(
            s, machine=machine, source="operator", title="Broken engraver", description="d", now=at
        )
        s.execute(
            update(Ticket)
            .where(Ticket.id == t.id)
            .values(state="dead", last_error="Plex: no such workcenter")
        )
        s.add(TicketEvent(ticket_id=t.id, at=at, event="dead", detail="rejected"))
    job.run_once(at + timedelta(seconds=1))
    [(receiver, integration, [key])] = _deliveries(sessions)
    assert (receiver, integration) == ("admin", "email")
    assert key.startswith(f"{t.id}:ops:")
    with sessions() as s:
        payload = s.scalars(select(NotifyDelivery.payload)).one()
    assert payload["notices"][0]["detail"] == "Plex: no such workcenter"


def test_routed_events_and_shift_label() -> None:
    assert routed_event("escalated", "level 2") == ("escalated", 2)
    assert routed_event("escalated", "level 3: tool 1 worn again") == ("recurred", 3)
    assert routed_event("episode_resolved", "x") == ("cleared", None)
    assert routed_event("closed", "closed in Plex (Closed)") == ("cleared", None)
    assert routed_event("claimed", "") is None
    cfg = parse_config(CONFIG)
    cal = calendar_from_config(cfg.notify.calendar, cfg.plant.timezone)
    assert shift_at(cal, datetime(2026, 12, 7, 8, 0, tzinfo=TZ)) == "first"
    assert shift_at(cal, datetime(2026, 12, 5, 3, 0, tzinfo=TZ)) == "third"  # Friday's night
    assert shift_at(cal, datetime(2026, 12, 6, 23, 0, tzinfo=TZ)) == ""  # Sunday: off


def test_an_event_stamped_ahead_of_the_clock_is_routed_not_skipped(pg_engine: Engine) -> None:
    sessions = session_factory(pg_engine)
    cfg = parse_config(CONFIG)
    cal = calendar_from_config(cfg.notify.calendar, cfg.plant.timezone)
    job = DispatchJob(cfg, cal, sessions)
    now = datetime(2026, 12, 7, 8, 0, tzinfo=TZ)
    ahead = _file(sessions, "cnc101", now + timedelta(hours=1))  # a signal clock running ahead
    behind = _file(sessions, "cnc103", now)
    assert job.run_once(now).routed == 2
    job.run_once(now + timedelta(seconds=31))
    keys = sorted(k for _, _, ks in _deliveries(sessions) for k in ks)
    assert [k.split(":")[0] for k in keys] == sorted([str(ahead), str(behind)])
