"""The demo's notify configuration does what the demo promises, on a simulated clock.

``config/demo.yaml``: cnc103's worn-tool ticket reaches level 2 two minutes after filing,
the supervisors get it by e-mail, the Plex ticket gets a note at each level, maintenance
hears of the filing. (The running demo was checked by hand: notify/README.md "Demo".)
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import yaml
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from core.config import RepsysConfig, parse_config
from core.db.engine import session_factory
from core.db.schema import Episode, NotifyDelivery, NotifyDeliveryItem, Ticket, TicketEvent
from core.outbox import add_ticket
from notify.dispatch_job import DispatchJob
from notify.escalation import calendar_from_config
from notify.sweep import EscalationSweep
from tests.conftest import REPO


def demo_config() -> RepsysConfig:
    text = (REPO / "config" / "demo.yaml").read_text()
    fill = {"REDIS_URL": "redis://127.0.0.1:1/0", "WORKDIR": "/tmp/repsys-demo"}
    text = re.sub(r"@([A-Z_]+)@", lambda m: fill.get(m.group(1), "1"), text)
    return parse_config(yaml.safe_load(text), file="demo.yaml")


def test_worn_tool_ticket_reaches_the_supervisors_and_plex_at_level_2(
    sqlite_engine: Engine,
) -> None:
    cfg = demo_config()
    sessions = session_factory(sqlite_engine)
    filed = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)  # a Sunday night: the demo runs any day
    machine = cfg.machine("cnc103")
    assert machine is not None
    with sessions() as s, s.begin():
        episode = Episode(
            fingerprint="e" * 16,
            machine_id="cnc103",
            rule="tool_life_short",
            rule_type="tool_life_short",
            started_at=filed,
            last_seen_at=filed,
        )
        s.add(episode)
        s.flush()
        t = add_ticket(
            s,
            machine=machine,
            source="rule",
            title="Tool 1 on CNC 103 is not reaching tool life",
            description="d",
            category="tooling",
            episode_id=episode.id,
            now=filed,
        )
        s.execute(
            update(Ticket)
            .where(Ticket.id == t.id)
            .values(state="filed", filed_at=filed, plex_number="WR-1")
        )
        s.add(TicketEvent(ticket_id=t.id, at=filed, event="filed", detail="WR-1"))
    cal = calendar_from_config(cfg.notify.calendar, cfg.plant.timezone)
    sweep = EscalationSweep(cfg.notify.escalation, cal, sessions)
    job = DispatchJob(cfg, cal, sessions)
    levels = []
    for seconds in range(0, 181, 10):  # the demo's sweep and dispatch, every 10 s
        now = filed + timedelta(seconds=seconds)
        sweep.run_once(now)
        job.run_once(now)
        with sessions() as s:
            levels.append(s.scalars(select(Ticket.escalation_level)).one())
    assert levels.index(1) * 10 in range(60, 71) and levels.index(2) * 10 in range(120, 131)
    with sessions() as s:
        got = sorted(
            (d.receiver, d.integration, i)
            for d, i in s.execute(
                select(NotifyDelivery, NotifyDeliveryItem.item_key).join(
                    NotifyDeliveryItem, NotifyDeliveryItem.delivery_id == NotifyDelivery.id
                )
            ).all()
        )
    # Item keys are ticket:event:n, n the level of an escalation (else the event's id).
    events = [(r, n, key.split(":")[1], key.split(":")[2]) for r, n, key in got]
    assert [e[:3] for e in events] == [
        ("maintenance", "email", "filed"),
        ("plex-notes", "plex", "escalated"),
        ("plex-notes", "plex", "escalated"),
        ("supervisors", "email", "escalated"),
    ]
    assert [e[3] for e in events[1:]] == ["1", "2", "2"]
