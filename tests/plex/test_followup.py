"""Plex follow-up against the simulated Plex: notes on escalation, recurrence and clear.

The ticket events go through the real dispatcher (``notify.dispatch_job``) into the
delivery outbox; ``plex.followup`` sends the ``plex`` deliveries; the simulated Plex keeps
each ticket's notes, read back here.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from core.db.schema import Episode, NotifyDelivery, Ticket, TicketEvent, utcnow
from core.metrics import new_registry
from notify.dispatch_job import DispatchJob
from notify.escalation import calendar_from_config
from plex.followup import FollowUpSender
from plex.metrics import PlexMetrics
from plex.sender import Sender
from tests.plex.conftest import add_tickets, build_actions

NOTIFY = {
    "defaults": {"group_by": ["machine"], "group_wait_s": 0, "group_interval_s": 1},
    "receivers": [{"name": "plex-notes", "plex": {"note": True, "raise_priority_at": 2}}],
    "route": {"receiver": "plex-notes"},
    "outbox": {"backoff_s": 0.01, "backoff_max_s": 0.02},
}


def _file_one(cfg, sessions, redis_client) -> int:
    [ticket_id] = add_tickets(sessions, cfg, 1)
    metrics = PlexMetrics(new_registry())
    sender = Sender(cfg, sessions, build_actions(cfg, redis_client, metrics), metrics=metrics)
    assert sender.run_once() == 1
    return ticket_id


def _events(sessions, ticket_id: int, *events: tuple[str, str]) -> None:
    with sessions() as s, s.begin():
        for event, detail in events:
            s.add(TicketEvent(ticket_id=ticket_id, at=utcnow(), event=event, detail=detail))


def _dispatch(cfg, sessions, later_s: float = 0.0) -> None:
    cal = calendar_from_config(cfg.notify.calendar, cfg.plant.timezone)
    DispatchJob(cfg, cal, sessions).run_once(utcnow() + timedelta(seconds=later_s))


def test_notes_for_escalation_recurrence_and_clear_and_priority_raised(
    plex_config, sim, sessions, redis_client
) -> None:
    cfg = plex_config(notify=NOTIFY)
    ticket_id = _file_one(cfg, sessions, redis_client)
    with sessions() as s, s.begin():
        episode = Episode(
            fingerprint="f" * 16,
            machine_id="cnc101",
            rule="tool_life_short",
            rule_type="tool_life_short",
            started_at=utcnow(),
            last_seen_at=utcnow(),
            repeat_count=3,
            evidence={"values": {"run_quantity": 14, "tool_life": 198}},
        )
        s.add(episode)
        s.flush()
        s.execute(
            update(Ticket)
            .where(Ticket.id == ticket_id)
            .values(escalation_level=1, episode_id=episode.id)
        )
    _events(
        sessions,
        ticket_id,
        ("escalated", "level 2"),
        ("escalated", "level 3: Tool 1 on cnc101 worn again"),
        ("episode_resolved", "episode x#1 resolved after 3 repeats"),
    )
    _dispatch(cfg, sessions)
    follow = FollowUpSender(cfg, sessions, build_actions(cfg, redis_client), name="f")
    assert follow.run_once() == 1
    [plex_ticket] = sim.tickets()
    texts = [n["text"] for n in plex_ticket.notes]
    # "filed" came first (the sender's own event), then the three follow-ups.
    assert len(texts) == 4, texts
    assert "filed by RepSys" in texts[0]
    assert "escalated to level 2" in texts[1]
    assert "recurred while this ticket is open (3 repeats)" in texts[2]
    assert "values.run_quantity=14, values.tool_life=198" in texts[2]  # the latest evidence
    assert "condition cleared" in texts[3]
    assert plex_ticket.priority == "1"  # high severity is "1" already; the next test raises
    assert len(sim.tickets()) == 1  # a recurrence never files a second ticket
    with sessions() as s:
        assert [d.state for d in s.scalars(select(NotifyDelivery))] == ["sent"]


def test_priority_raised_only_at_the_configured_level(
    plex_config, sim, sessions, redis_client
) -> None:
    notify = {
        **NOTIFY,
        "receivers": [{"name": "plex-notes", "plex": {"note": False, "raise_priority_at": 2}}],
    }
    cfg = plex_config(notify=notify, plex={"actions": {"follow_up": {"raised_priority": "0"}}})
    ticket_id = _file_one(cfg, sessions, redis_client)
    follow = FollowUpSender(cfg, sessions, build_actions(cfg, redis_client), name="f")
    _events(sessions, ticket_id, ("escalated", "level 1"))
    _dispatch(cfg, sessions)
    follow.run_once()
    assert sim.tickets()[0].priority == "1"  # the severity's priority, untouched at level 1
    _events(sessions, ticket_id, ("escalated", "level 2"))
    _dispatch(cfg, sessions, later_s=2)  # the group's next beat (group_interval 1 s)
    assert follow.run_once(utcnow() + timedelta(seconds=3)) == 1
    assert sim.tickets()[0].priority == "0"
    assert sim.tickets()[0].notes == []


def test_a_note_plex_took_before_the_answer_was_lost_is_not_added_twice(
    plex_config, make_sim, sessions, redis_client
) -> None:
    sim = make_sim(faults={"hang_s": 3})
    cfg = plex_config({"endpoint": sim.url, "operation_timeout_s": 0.5}, notify=NOTIFY)
    ticket_id = _file_one(cfg, sessions, redis_client)
    _events(sessions, ticket_id, ("escalated", "level 2"))
    _dispatch(cfg, sessions)
    follow = FollowUpSender(cfg, sessions, build_actions(cfg, redis_client), name="f")
    sim.faults.configure({"queue": ["timeout_after_commit"]})
    follow.run_once()  # the filed note: committed in Plex, the answer never came
    with sessions() as s:
        [row] = s.scalars(select(NotifyDelivery))
    assert (row.state, row.last_error_reason) == ("pending", "timeout")
    deadline = utcnow() + timedelta(seconds=30)
    while row.state != "sent" and utcnow() < deadline:
        follow.run_once(utcnow() + timedelta(seconds=1))
        with sessions() as s:
            row = s.scalars(select(NotifyDelivery)).one()
    assert row.state == "sent"
    refs = [n["ref"] for n in sim.tickets()[0].notes]
    assert len(refs) == len(set(refs)) == 2  # filed + escalated, each once


def test_wall_clock_escalation_of_the_status_follow_up_yields_to_notify(plex_config, sim) -> None:
    from plex.followup import status_config
    from plex.status import escalation_level

    on = plex_config()
    assert on.notify.escalation.enabled and on.plex.status.escalate_after_h == [4.0, 24.0, 72.0]
    # Saturday evening, 20 h after a Friday-night filing: no wall-clock level any more.
    assert escalation_level(20, status_config(on).escalate_after_h) == 0
    off = plex_config(notify={"escalation": {"enabled": False}})
    assert status_config(off).escalate_after_h == [4.0, 24.0, 72.0]
