"""The sender against the simulated Plex on SQLite: filing, retries, dead letters, lookups."""

from __future__ import annotations

from datetime import timedelta

import pytest
import structlog
from sqlalchemy import select

from core.config.machines import Machine
from core.db.schema import Episode, Ticket, TicketEvent, utcnow
from core.metrics import new_registry, sample
from core.outbox import add_ticket
from plex import outbox
from plex.masterdata import workcenter_problems
from plex.metrics import PlexMetrics
from plex.sender import Sender
from plex.status import StatusFollowUp, escalation_level
from tests.plex.conftest import add_tickets, build_actions, tickets_by_state


def make_sender(cfg, sessions, redis_client, name="s1", registry=None) -> Sender:
    metrics = PlexMetrics(registry or new_registry())
    actions = build_actions(cfg, redis_client, metrics)
    return Sender(cfg, sessions, actions, metrics=metrics, name=name)


def later(seconds: float = 120):
    return utcnow() + timedelta(seconds=seconds)


def events(sessions, ticket_id: int) -> list[str]:
    with sessions() as s:
        rows = s.scalars(
            select(TicketEvent).where(TicketEvent.ticket_id == ticket_id).order_by(TicketEvent.id)
        )
        return [e.event for e in rows]


def get(sessions, ticket_id: int) -> Ticket:
    with sessions() as s:
        ticket = s.get(Ticket, ticket_id)
        assert ticket is not None
        return ticket


def test_files_tickets_with_inputs_from_the_template(plex_config, sim, sessions, redis_client):
    cfg = plex_config()
    ids = add_tickets(sessions, cfg, 3)
    sender = make_sender(cfg, sessions, redis_client)
    assert sender.run_once() == 3
    assert sender.run_once() == 0
    filed = {t.external_ref: t for t in sim.tickets()}
    for ticket_id in ids:
        row = get(sessions, ticket_id)
        assert row.state == "filed"
        plex_ticket = filed[row.external_ref]
        assert row.plex_number == plex_ticket.number
        assert row.plex_key == str(plex_ticket.key)
        assert row.plex_instance and row.plex_instance.isdigit()
        assert row.claimed_by is None
        assert plex_ticket.workcenter_key == 61101
        assert plex_ticket.priority == "1"  # severity high -> priority 1 (plex.actions.priorities)
        assert plex_ticket.requested_by == "badge-17"
        assert plex_ticket.title.startswith("Broken engraver")
        assert events(sessions, ticket_id) == ["created", "claimed", "filed"]


def test_timeout_after_commit_is_found_by_lookup_not_sent_twice(
    plex_config, make_sim, sessions, redis_client
):
    sim = make_sim(faults={"hang_s": 3})
    cfg = plex_config({"endpoint": sim.url, "operation_timeout_s": 0.5})
    [ticket_id] = add_tickets(sessions, cfg, 1)
    sender = make_sender(cfg, sessions, redis_client)
    sim.faults.configure({"queue": ["timeout_after_commit"]})
    sender.run_once()
    row = get(sessions, ticket_id)
    assert (row.state, row.last_error_reason) == ("pending", "timeout")
    assert len(sim.tickets()) == 1  # Plex committed it although we heard nothing
    sender.run_once(now=later())
    row = get(sessions, ticket_id)
    assert row.state == "filed"
    assert row.plex_number == sim.tickets()[0].number
    assert len(sim.tickets()) == 1
    assert events(sessions, ticket_id) == ["created", "claimed", "retry", "claimed", "filed"]
    with sessions() as s:
        filed = s.scalars(select(TicketEvent).where(TicketEvent.event == "filed")).one()
    assert filed.detail.startswith("found by lookup: Plex WR-")


def test_transient_failure_retries_with_backoff_then_files(
    plex_config, sim, sessions, redis_client
):
    cfg = plex_config({"sender": {"backoff_base_s": 5, "backoff_cap_s": 60}})
    [ticket_id] = add_tickets(sessions, cfg, 1)
    sender = make_sender(cfg, sessions, redis_client)
    sim.faults.configure({"queue": ["http_500", "http_500"]})
    before = utcnow()
    sender.run_once()
    first = get(sessions, ticket_id)
    assert (first.state, first.attempts, first.last_error_reason) == ("pending", 1, "http_5xx")
    delay1 = (first.next_attempt_at.replace(tzinfo=before.tzinfo) - before).total_seconds()
    assert 2.5 <= delay1 <= 5.5  # jitter in [base/2, base]
    assert sender.run_once() == 0  # not due yet
    sender.run_once(now=later(10))  # the lookup gets the second 500
    second = get(sessions, ticket_id)
    assert (second.state, second.attempts) == ("pending", 2)
    # Retry delays count from the failure (wall clock), whatever ``now`` claimed the row.
    delay2 = (second.next_attempt_at.replace(tzinfo=before.tzinfo) - before).total_seconds()
    assert 5 <= delay2 <= 11  # the second retry's ceiling doubled: [5, 10] s
    sender.run_once(now=later(200))
    assert get(sessions, ticket_id).state == "filed"
    assert len(sim.tickets()) == 1


def test_429_delays_the_retry_by_retry_after(plex_config, make_sim, sessions, redis_client):
    sim = make_sim(faults={"retry_after_s": 7})
    cfg = plex_config({"endpoint": sim.url})
    [ticket_id] = add_tickets(sessions, cfg, 1)
    sim.faults.configure({"queue": ["http_429"]})
    before = utcnow()
    make_sender(cfg, sessions, redis_client).run_once()
    row = get(sessions, ticket_id)
    assert row.last_error_reason == "rate_limited"
    assert (row.next_attempt_at.replace(tzinfo=before.tzinfo) - before).total_seconds() >= 7


def test_rejections_are_dead_lettered_with_their_reason(plex_config, sim, sessions, redis_client):
    cfg = plex_config()
    ghost = Machine(id="ghost", pcn=123681, workcenter_key=99999, workcenter_code="ghost")
    with sessions() as s, s.begin():
        bad_wc = add_ticket(s, machine=ghost, source="operator", title="t", description="d").id
        bad_kind = add_ticket(
            s,
            machine=cfg.machines[0],
            source="rule",
            title="t",
            description="d",
            kind="workcenter_status_change",
        ).id
    registry = new_registry()
    make_sender(cfg, sessions, redis_client, registry=registry).run_once()
    wc = get(sessions, bad_wc)
    assert (wc.state, wc.last_error_reason) == ("dead", "data_source_error")
    assert "'Workcenter_Key 99999 does not exist'" in (wc.last_error or "")
    kind = get(sessions, bad_kind)
    assert (kind.state, kind.last_error_reason) == ("dead", "no_action")
    assert (
        kind.last_error == "no plex.actions.create entry for ticket kind 'workcenter_status_change'"
    )
    assert sim.tickets() == []
    assert sample(registry, "repsys_plex_dead_letters_total", {"reason": "no_action"}) == 1
    assert sample(registry, "repsys_plex_dead_letters_total", {"reason": "data_source_error"}) == 1


def test_out_of_attempts_is_dead(plex_config, sim, sessions, redis_client):
    cfg = plex_config({"sender": {"max_attempts": 2}})
    [ticket_id] = add_tickets(sessions, cfg, 1)
    sender = make_sender(cfg, sessions, redis_client)
    sim.faults.configure({"queue": ["http_500"] * 3})
    sender.run_once()
    sender.run_once(now=later())
    row = get(sessions, ticket_id)
    assert (row.state, row.last_error_reason) == ("dead", "out_of_attempts")
    assert row.last_error == "2 attempts; last: Plex answered HTTP 500"


def test_a_dead_senders_row_is_recovered_by_lookup(plex_config, sim, sessions, redis_client):
    cfg = plex_config()
    [ticket_id] = add_tickets(sessions, cfg, 1)
    # A sender claims the row, Plex creates the ticket, the sender dies before recording.
    [claimed] = outbox.claim(sessions, "dead-sender", batch=10, ttl_s=30)
    build_actions(cfg, redis_client).file(claimed.ticket)
    assert get(sessions, ticket_id).state == "sending"
    survivor = make_sender(cfg, sessions, redis_client, name="survivor")
    assert survivor.run_once() == 0  # the claim has not expired yet
    assert survivor.run_once(now=later(60)) == 1
    row = get(sessions, ticket_id)
    assert (row.state, row.plex_number) == ("filed", sim.tickets()[0].number)
    assert len(sim.tickets()) == 1
    with sessions() as s:
        claims = s.scalars(
            select(TicketEvent.detail)
            .where(TicketEvent.event == "claimed")
            .order_by(TicketEvent.id)
        ).all()
    assert claims[-1] == "survivor attempt 2, recovered from dead-sender whose claim expired"


def test_a_sender_that_lost_its_claim_cannot_overwrite(plex_config, sim, sessions, redis_client):
    cfg = plex_config()
    [ticket_id] = add_tickets(sessions, cfg, 1)
    [_slow] = outbox.claim(sessions, "slow", batch=1, ttl_s=1)
    [fast] = outbox.claim(sessions, "fast", batch=1, ttl_s=30, now=later(5))
    assert fast.recovered
    assert not outbox.mark_filed(sessions, ticket_id, "slow", number="X", key="1", instance_no="")
    assert outbox.mark_filed(sessions, ticket_id, "fast", number="Y", key="2", instance_no="")
    assert get(sessions, ticket_id).plex_number == "Y"


def test_replay_looks_up_first_and_cancel_rules(plex_config, sim, sessions, redis_client):
    cfg = plex_config()
    a, b, c = add_tickets(sessions, cfg, 3)
    sim.faults.configure({"queue": ["xxe"]})
    sender = make_sender(cfg, sessions, redis_client)
    sender.run_once()
    assert get(sessions, a).state == "dead"
    assert get(sessions, a).last_error_reason == "unsafe_xml"
    with sessions() as s:
        with pytest.raises(outbox.OutboxError, match=f"ticket {b} is filed; only dead tickets"):
            outbox.replay(s, s.get(Ticket, b), who="ops")
        with pytest.raises(outbox.OutboxError, match=f"ticket {c} is filed; only pending or dead"):
            outbox.cancel(s, s.get(Ticket, c), who="ops")
        outbox.replay(s, s.get(Ticket, a), who="ops")
        s.commit()
    assert sender.run_once() == 1
    assert get(sessions, a).state == "filed"
    assert events(sessions, a) == [
        "created",
        "claimed",
        "dead",
        "replayed",
        "claimed",
        "filed",
    ]
    # The replay looked the reference up (nothing there) before sending: 2 calls.
    ops = [r.data_source_key for r in sim.requests()][-2:]
    assert ops == [910010, 910001]
    [d] = add_tickets(sessions, cfg, 1, prefix="RS-C")
    with sessions() as s:
        outbox.cancel(s, s.get(Ticket, d), who="ops")
        s.commit()
    assert sender.run_once() == 0
    assert get(sessions, d).state == "cancelled"


def test_status_follow_up_closes_ticket_and_resolves_episode(
    plex_config, sim, sessions, redis_client
):
    cfg = plex_config()
    now = utcnow()
    with sessions() as s, s.begin():
        episode = Episode(
            fingerprint="cnc101|tool_life|T12",
            machine_id="cnc101",
            rule="tool_life",
            rule_type="tool_not_reaching_life",
            started_at=now,
            last_seen_at=now,
        )
        s.add(episode)
        s.flush()
        ticket_id = add_ticket(
            s,
            machine=cfg.machines[0],
            source="rule",
            title="Tool 12 short life",
            description="d",
            episode_id=episode.id,
            external_ref="RS-EP1",
        ).id
        other_id = add_ticket(
            s,
            machine=cfg.machines[0],
            source="rule",
            title="x",
            description="d",
            external_ref="RS-EP2",
        ).id
        episode_id = episode.id
    registry = new_registry()
    metrics = PlexMetrics(registry)
    actions = build_actions(cfg, redis_client, metrics)
    Sender(cfg, sessions, actions, name="s").run_once()
    follow = StatusFollowUp(cfg.plex.status, sessions, actions, metrics=metrics)
    assert follow.run_once() == 2
    assert get(sessions, ticket_id).state == "filed"
    plex_key = int(get(sessions, ticket_id).plex_key or 0)
    sim.set_ticket_status(plex_key, "Closed")
    assert follow.run_once(now=later(5 * 3600)) == 2
    row = get(sessions, ticket_id)
    assert (row.state, row.plex_status) == ("closed", "Closed")
    with sessions() as s:
        ep = s.get(Episode, episode_id)
        assert ep is not None and ep.state == "resolved" and ep.resolved_at is not None
    other = get(sessions, other_id)
    assert (other.state, other.escalation_level) == ("filed", 1)  # open for 5 h > 4 h
    assert events(sessions, other_id)[-1] == "escalated"
    assert sample(registry, "repsys_plex_status_checks_total", {"outcome": "closed"}) == 1


def test_escalation_levels() -> None:
    assert [escalation_level(h, [4, 24, 72]) for h in (0, 3.9, 4, 30, 100)] == [0, 0, 1, 2, 3]


def test_master_data_check_names_each_mismatch(plex_config, sim, redis_client):
    cfg = plex_config(
        machines=[
            {"id": "cnc101", "pcn": 123681, "workcenter_key": 61101, "workcenter_code": "cnc101"},
            {"id": "cnc999", "pcn": 123681, "workcenter_key": 69999, "workcenter_code": "cnc999"},
            {"id": "cnc103", "pcn": 123681, "workcenter_key": 61324, "workcenter_code": "cnc1O3"},
        ]
    )
    problems = workcenter_problems(build_actions(cfg, redis_client), cfg.machines)
    assert problems == [
        "machine cnc999: workcenter_key 69999 (cnc999) does not exist in Plex",
        "machine cnc103: workcenter_key 61324 is 'cnc103' in Plex, not 'cnc1O3'",
    ]


def test_outbox_depth_metrics(plex_config, sim, sessions, redis_client):
    cfg = plex_config()
    add_tickets(sessions, cfg, 2)
    registry = new_registry()
    sender = make_sender(cfg, sessions, redis_client, registry=registry)
    sender.update_depth()
    assert sample(registry, "repsys_plex_outbox_tickets", {"state": "pending"}) == 2
    sender.run_once()
    sender.update_depth()
    assert sample(registry, "repsys_plex_outbox_tickets", {"state": "pending"}) == 0
    assert sample(registry, "repsys_plex_outbox_tickets", {"state": "filed"}) == 2
    assert sample(registry, "repsys_plex_tickets_total", {"outcome": "filed"}) == 2
    assert len(tickets_by_state(sessions)["filed"]) == 2


def test_the_filed_log_line_names_the_ticket_ref_and_the_plex_number(
    plex_config, sim, sessions, redis_client
):
    """``grep RS-...`` in the logs follows a ticket from the rules worker to Plex."""
    cfg = plex_config()
    [ticket_id] = add_tickets(sessions, cfg, 1)
    sender = make_sender(cfg, sessions, redis_client)
    with structlog.testing.capture_logs() as logs:
        assert sender.run_once() == 1
    row = get(sessions, ticket_id)
    [filed] = [e for e in logs if e["event"] == "plex_ticket_filed"]
    assert (filed["ref"], filed["plex_number"]) == (row.external_ref, row.plex_number)
