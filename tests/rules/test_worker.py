"""The worker on a real redis-server and a real database: episodes, tickets, acks, replays.

Signals are XADDed to the partition streams the way the collector writes them; the worker
runs in-process (``once`` or its steps) so each test can stop it at the exact point it
examines: after the database commit and before the checkpoint, with a lease taken away.
"""

from __future__ import annotations

import gc
import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from core import keys
from core.db.schema import Episode, Silence, Ticket
from core.metrics import new_registry, sample
from core.model import Signal
from core.outbox import episode_ref
from repsys.servers import wait_until
from rules.state import MachineState, fingerprint
from tests.rules.helpers import (
    episodes,
    make_worker,
    pending,
    push,
    ticket_events,
    tickets,
)

P = 4
#: An hour ago: signals are recent, so silences read by wall-clock time apply to them.
T0 = float(int(time.time()) - 3600)
FP = fingerprint("cnc103", "tool_life_short", "T1")


def early_change(t: float, machine: str = "cnc103", reached: int = 100) -> list[Signal]:
    """Tool T1 read at ``reached`` then back at 0: changed before its life (348)."""
    return [
        Signal(machine, "tool_life", reached, source_ts=t, receive_ts=t, subject="T1"),
        Signal(machine, "tool_life", 0, source_ts=t + 1, receive_ts=t + 1, subject="T1"),
    ]


def rules_cfg(make_config, *, short: dict[str, Any] | None = None, **over):
    tools = {"T1": {"life": 348}}
    section = {
        "group_wait_s": 0,
        "machines": {
            "cnc103": {"fastest_cycle_time_s": 30, "tools": tools},
            "cnc101": {"tools": tools},
        },
        "rules": [
            {"name": "tool_life_short", "type": "tool_life_short", **(short or {})},
            {"name": "tool_change_forecast", "type": "tool_change_forecast"},
        ],
    }
    return make_config({"streams": {"partitions": P}, "rules": section}, **over)


def test_signals_become_one_episode_and_one_ticket_and_are_acknowledged(
    make_config, redis_client, sqlite_engine
) -> None:
    cfg = rules_cfg(make_config)
    push(redis_client, early_change(T0), P)
    registry = new_registry()
    stats = make_worker(cfg, redis_client, sqlite_engine, registry=registry).once(now=T0 + 2)
    assert (stats.entries, stats.episodes, stats.tickets, stats.replays) == (2, 1, 1, 0)

    [ep] = episodes(sqlite_engine)
    assert (ep.machine_id, ep.rule, ep.rule_type, ep.subject) == (
        "cnc103", "tool_life_short", "tool_life_short", "T1",
    )  # fmt: skip
    assert (ep.fingerprint, ep.occurrence, ep.state) == (FP, 1, "firing")
    assert ep.summary == "Tool 1 on cnc103 is not reaching tool life: changed at 100 of 348 parts"
    assert ep.started_at.replace(tzinfo=UTC) == datetime.fromtimestamp(T0 + 1, UTC)
    assert ep.evidence["values"]["reached"] == 100
    assert ep.evidence["parameters"] == {"min_fraction": 1.0}

    [ticket] = tickets(sqlite_engine)
    assert ticket.external_ref == episode_ref(FP, 1)
    assert (ticket.source, ticket.state, ticket.episode_id) == ("rule", "pending", ep.id)
    assert (ticket.pcn, ticket.workcenter_key, ticket.category) == (123681, 61324, "tooling")
    assert ticket.title == "Tooling Issue: Tool 1 on cnc103 is not reaching tool life"
    assert "Machine: cnc103 (cnc103), workcenter cnc103 (61324), PCN 123681." in ticket.description
    assert ticket_events(sqlite_engine) == [(ticket.id, "created")]

    # Everything acknowledged. The keyspace: every partition's stream (with the rules
    # group, created when the partition is taken), the state of the one partition that
    # has a machine, the forecast, the machine's live hash for the boards; no lease or
    # registry entry is left behind.
    p = keys.partition_of("cnc103", P)
    assert pending(redis_client, P) == 0
    assert set(redis_client.keys("*")) == {
        *(keys.signal_stream(q) for q in range(P)),
        keys.rules_state(p),
        keys.UPCOMING_TOOL_CHANGES,
        keys.UPCOMING_TOOL_CHANGES_AT,
        keys.machine_live("cnc103"),
    }
    assert {g["name"] for g in redis_client.xinfo_groups(keys.signal_stream(0))} == {"rules"}
    # floor((348 - 0) / 1 x 30 / 60) = 174 minutes to the next change of the new tool.
    assert redis_client.zscore(keys.UPCOMING_TOOL_CHANGES, "cnc103|T1") == 174
    state = MachineState.from_blob("cnc103", redis_client.hget(keys.rules_state(p), "cnc103"))
    assert state.occ == {FP: 1}
    assert sample(registry, "repsys_rules_signals_total") == 2
    labels = {"rule": "tool_life_short", "state": "firing"}
    assert sample(registry, "repsys_rules_anomalies_total", labels) == 1


BAD_ENTRIES = [
    ({"v": "2", "m": "cnc103", "n": "x"}, "unknown_version", "unknown signal version '2'"),
    ({"v": "1", "m": "cnc103", "n": "tool_life", "q": "good", "ts": "1", "rts": "1"},
     "missing_field", "field 'x' is missing"),
    ({"v": "1", "m": "cnc103", "n": "tool_life", "x": "{oops", "q": "good", "ts": "1", "rts": "1"},
     "bad_field", "field 'x' is not JSON"),
    ({"v": "1", "m": "cnc103", "n": "tool_life", "x": "1", "q": "fine", "ts": "1", "rts": "1"},
     "bad_field", "field 'q' is not a quality"),
    ({"v": "1", "m": "cnc103", "n": "tool_life", "x": "1", "q": "good", "ts": "soon", "rts": "1"},
     "bad_field", "field 'ts' is not a timestamp"),
]  # fmt: skip


def test_bad_entries_are_dead_lettered_with_their_reason_and_the_worker_goes_on(
    make_config, redis_client, sqlite_engine
) -> None:
    cfg = rules_cfg(make_config)
    p = keys.partition_of("cnc103", P)
    ids = [redis_client.xadd(keys.signal_stream(p), fields) for fields, _, _ in BAD_ENTRIES]
    push(redis_client, early_change(T0), P)
    registry = new_registry()
    stats = make_worker(cfg, redis_client, sqlite_engine, registry=registry).once(now=T0 + 2)

    letters = redis_client.xrange(keys.RULES_DEAD_LETTERS)
    got = [(f["id"], f["reason"], f["error"], json.loads(f["fields"])) for _, f in letters]
    assert got == [(i, r, e, f) for i, (f, r, e) in zip(ids, BAD_ENTRIES, strict=True)]
    assert {f["stream"] for _, f in letters} == {keys.signal_stream(p)}
    assert stats.dead_letters == 5
    assert sample(registry, "repsys_rules_dead_letters_total", {"reason": "bad_field"}) == 3
    # The good entries after them were evaluated, and every entry is acknowledged.
    assert [e.rule for e in episodes(sqlite_engine)] == ["tool_life_short"]
    assert pending(redis_client, P) == 0


def test_replay_after_a_crash_between_commit_and_checkpoint_writes_nothing_twice(
    make_config, redis_client, pg_url, pg_engine
) -> None:
    worker_cfg = {"lease_ttl_s": 0.6, "renew_interval_s": 0.2, "worker_ttl_s": 0.6}
    cfg = rules_cfg(make_config, database={"url": pg_url})
    cfg = cfg.model_copy(
        update={"rules": cfg.rules.model_copy(update={"worker": cfg.rules.worker.model_copy(
            update=worker_cfg)})}
    )  # fmt: skip
    push(redis_client, early_change(T0), P)

    crashed = make_worker(cfg, redis_client, pg_engine, worker_id="crashed")
    crashed.round()  # takes every partition
    assert crashed.read_once() == 2
    assert crashed.commit()  # the episode and its ticket are in the database ...
    # ... and the worker dies here: no checkpoint, no acknowledgement, leases left to expire.
    assert [(e.fingerprint, e.occurrence) for e in episodes(pg_engine)] == [(FP, 1)]
    assert pending(redis_client, P) == 2
    first_ticket = tickets(pg_engine)[0]
    wait_until(
        lambda: not any(redis_client.exists(keys.rules_lease(p)) for p in range(P)),
        timeout=5,
        what="leases of the crashed worker to expire",
    )

    stats = make_worker(cfg, redis_client, pg_engine, worker_id="next").once(now=T0 + 2)
    # The machine had no checkpoint: its open episode came from the database at the take,
    # and the replayed change is the anomaly that opened it (not a repeat, not a write).
    assert (stats.entries, stats.replays, stats.episodes, stats.tickets) == (2, 0, 0, 0)
    assert [(e.fingerprint, e.occurrence, e.repeat_count) for e in episodes(pg_engine)] == [
        (FP, 1, 0)
    ]
    assert [(t.id, t.external_ref) for t in tickets(pg_engine)] == [
        (first_ticket.id, first_ticket.external_ref)
    ]
    assert pending(redis_client, P) == 0

    # The state moved on as if nothing happened: the next early change opens occurrence 2
    # (the first episode resolves after keep_firing_for, 1 hour, in between).
    push(redis_client, early_change(T0 + 4000), P)
    make_worker(cfg, redis_client, pg_engine).once(now=T0 + 4002)
    assert [(e.occurrence, e.state) for e in episodes(pg_engine)] == [
        (1, "resolved"),
        (2, "firing"),
    ]
    assert [t.external_ref for t in tickets(pg_engine)] == [episode_ref(FP, 1), episode_ref(FP, 2)]


def test_occurrence_moves_on_when_the_database_holds_another_history(
    make_config, redis_client, sqlite_engine
) -> None:
    cfg = rules_cfg(make_config, short={"keep_firing_for_s": 0})
    worker = make_worker(cfg, redis_client, sqlite_engine)
    worker.round()  # the partitions are taken (and the database read) before the row exists
    with Session(sqlite_engine) as s, s.begin():
        s.add(Episode(fingerprint=FP, occurrence=1, machine_id="cnc103", rule="tool_life_short",
                      rule_type="tool_life_short", started_at=datetime.fromtimestamp(T0 - 999, UTC),
                      last_seen_at=datetime.fromtimestamp(T0 - 999, UTC)))  # fmt: skip
    push(redis_client, early_change(T0), P)
    stats = worker.once(now=T0 + 2)
    assert (stats.episodes, stats.tickets, stats.replays) == (1, 1, 0)
    assert [e.occurrence for e in episodes(sqlite_engine)] == [1, 2]
    assert [t.external_ref for t in tickets(sqlite_engine)] == [episode_ref(FP, 2)]
    p = keys.partition_of("cnc103", P)
    state = MachineState.from_blob("cnc103", redis_client.hget(keys.rules_state(p), "cnc103"))
    assert state.occ == {FP: 2}
    # The next episode of the series is number 3, not a collision with 2.
    push(redis_client, early_change(T0 + 10), P)
    make_worker(cfg, redis_client, sqlite_engine).once(now=T0 + 12)
    assert [e.occurrence for e in episodes(sqlite_engine)] == [1, 2, 3]


def test_a_silence_in_the_database_holds_episodes_back(
    make_config, redis_client, sqlite_engine
) -> None:
    cfg = rules_cfg(make_config)
    with Session(sqlite_engine) as s, s.begin():
        s.add(Silence(machine_id="cnc103", rule="tool_life_short", author="maint",
                      reason="spindle rebuild", starts_at=datetime.fromtimestamp(T0 - 10, UTC),
                      ends_at=datetime.fromtimestamp(time.time() + 3600, UTC)))  # fmt: skip
    push(redis_client, early_change(T0) + early_change(T0, machine="cnc101"), P)
    registry = new_registry()
    make_worker(cfg, redis_client, sqlite_engine, registry=registry).once(now=T0 + 2)
    assert [e.machine_id for e in episodes(sqlite_engine)] == ["cnc101"]
    labels = {"rule": "tool_life_short", "state": "silenced"}
    assert sample(registry, "repsys_rules_anomalies_total", labels) == 1


def test_escalation_and_resolution_update_the_existing_ticket(
    make_config, redis_client, sqlite_engine
) -> None:
    cfg = rules_cfg(make_config, short={"keep_firing_for_s": 100, "repeat_interval_s": 60})
    # Early changes at +1, +31 (a repeat) and +71 (a repeat; at +70, 69 s after the ticket
    # and with a repeat since, the ticket is escalated); quiet until +500: resolved.
    push(redis_client, early_change(T0) + early_change(T0 + 30) + early_change(T0 + 70), P)
    stats = make_worker(cfg, redis_client, sqlite_engine).once(now=T0 + 500)
    assert (stats.episodes, stats.tickets) == (1, 1)
    [ep] = episodes(sqlite_engine)
    assert (ep.state, ep.repeat_count) == ("resolved", 2)
    assert ep.resolved_at is not None
    assert ep.resolved_at.replace(tzinfo=UTC) == datetime.fromtimestamp(T0 + 500, UTC)
    [ticket] = tickets(sqlite_engine)
    assert ticket.escalation_level == 1
    assert [e for _, e in ticket_events(sqlite_engine)] == [
        "created", "escalated", "episode_resolved",
    ]  # fmt: skip


def test_a_worker_that_lost_its_lease_can_neither_read_nor_acknowledge(
    make_config, redis_client, sqlite_engine
) -> None:
    cfg = rules_cfg(make_config)
    stale = make_worker(cfg, redis_client, sqlite_engine, worker_id="stale")
    stale.round()
    p = keys.partition_of("cnc103", P)
    assert sorted(stale.held) == list(range(P))
    redis_client.set(keys.rules_lease(p), "newer")  # the lease moved on while it was paused
    push(redis_client, early_change(T0), P)

    assert stale.read_once() == 0
    assert p not in stale.held
    assert pending(redis_client, P) == 0  # nothing was delivered to the stale worker
    assert not stale.stream.checkpoint(p, {"cnc103": "{}"}, [], 1000)
    assert not redis_client.hexists(keys.rules_state(p), "cnc103")

    redis_client.delete(keys.rules_lease(p))
    stats = make_worker(cfg, redis_client, sqlite_engine, worker_id="newer").once(now=T0 + 2)
    assert (stats.entries, stats.episodes) == (2, 1)


def test_workers_split_the_partitions_and_a_third_one_rebalances(
    make_config, redis_client, sqlite_engine
) -> None:
    cfg = rules_cfg(make_config, streams={"partitions": 8})
    a, b, c = (make_worker(cfg, redis_client, sqlite_engine, worker_id=w) for w in "abc")

    def owners() -> dict[str, int]:
        held = [redis_client.get(keys.rules_lease(p)) for p in range(8)]
        return {w: held.count(w) for w in "abc"}

    a.round()
    assert owners() == {"a": 8, "b": 0, "c": 0}
    b.round()  # target 4, nothing free yet
    a.round()  # a gives up its 4 least preferred partitions
    b.round()
    assert owners() == {"a": 4, "b": 4, "c": 0}
    assert set(a.held).isdisjoint(b.held)
    for _ in range(2):
        for w in (c, a, b, c):
            w.round()
    assert owners() == {"a": 3, "b": 3, "c": 2} or sorted(owners().values()) == [2, 3, 3]
    assert sorted(len(w.held) for w in (a, b, c)) == [2, 3, 3]
    a.shutdown()  # a clean stop leaves the registry: the others take its share at once
    b.round()
    c.round()
    assert owners() == {"a": 0, "b": 4, "c": 4}


@pytest.mark.parametrize("state_version", [2])
def test_a_checkpoint_of_an_unknown_version_is_refused(state_version: int) -> None:
    with pytest.raises(ValueError, match="rule state of cnc103 has unknown version 2"):
        MachineState.from_blob("cnc103", json.dumps({"v": state_version}))


def test_after_its_ticket_is_closed_in_plex_a_recurrence_files_a_new_ticket(
    make_config, redis_client, sqlite_engine
) -> None:
    cfg = rules_cfg(make_config, short={"repeat_interval_s": 60})
    push(redis_client, early_change(T0), P)
    make_worker(cfg, redis_client, sqlite_engine).once(now=T0 + 2)
    # Maintenance closes the ticket in Plex; the status follow-up (plex.status) records it.
    with Session(sqlite_engine) as s, s.begin():
        s.execute(update(Ticket).values(state="closed"))
        s.execute(update(Episode).values(state="resolved"))
    # The problem comes back twice: the first time is when the engine learns (instead of
    # escalating the closed ticket) that its episode is over; the second is a new one.
    push(redis_client, early_change(T0 + 100), P)
    make_worker(cfg, redis_client, sqlite_engine).once(now=T0 + 102)
    push(redis_client, early_change(T0 + 200), P)
    make_worker(cfg, redis_client, sqlite_engine).once(now=T0 + 202)
    assert [(e.occurrence, e.state) for e in episodes(sqlite_engine)] == [
        (1, "resolved"), (2, "firing"),
    ]  # fmt: skip
    first, second = tickets(sqlite_engine)
    assert (first.state, first.escalation_level) == ("closed", 0)
    assert (second.external_ref, second.state) == (episode_ref(FP, 2), "pending")
    assert "escalated" not in [e for _, e in ticket_events(sqlite_engine)]


def test_the_running_loop_freezes_what_lives_as_long_as_the_process(
    make_config, redis_client, sqlite_engine
) -> None:
    # The loop's start moves every object alive (modules, configuration, program) out
    # of the cycle collector's full passes (rules/worker.py: they stalled the loop).
    gc.unfreeze()
    worker = make_worker(rules_cfg(make_config), redis_client, sqlite_engine)
    push(redis_client, early_change(T0), P)
    thread = threading.Thread(target=worker.run, args=(worker.stopper,), daemon=True)
    try:
        thread.start()
        wait_until(lambda: worker.stats.episodes == 1, timeout=20, what="the episode")
        assert gc.get_freeze_count() > 1000
    finally:
        worker.stopper.stop()
        thread.join(20)
        gc.unfreeze()  # the rest of the test session as it was
    assert not thread.is_alive()


def test_a_machine_never_heard_from_is_reported_by_no_data(
    make_config, redis_client, sqlite_engine
) -> None:
    # cnc101 sends, cnc103 never does (a wrong node id, a collector that never reached it).
    section = {
        "group_wait_s": 0,
        "rules": [
            {"name": "no_data", "type": "no_data", "timeout_s": 120,
             "machines": ["cnc101", "cnc103"]},
        ],
    }  # fmt: skip
    cfg = make_config({"streams": {"partitions": P}, "rules": section})
    # The first pass starts watching both; the watch start survives the checkpoint, so the
    # second pass (a new worker, as after a takeover) measures from it.
    make_worker(cfg, redis_client, sqlite_engine).once(now=T0)
    sent = Signal("cnc101", "part_count", 5, source_ts=T0 + 100, receive_ts=T0 + 100)
    push(redis_client, [sent], P)
    make_worker(cfg, redis_client, sqlite_engine).once(now=T0 + 119)
    assert episodes(sqlite_engine) == []
    make_worker(cfg, redis_client, sqlite_engine).once(now=T0 + 150)
    [ep] = episodes(sqlite_engine)
    assert (ep.machine_id, ep.rule) == ("cnc103", "no_data")
    assert ep.started_at.replace(tzinfo=UTC) == datetime.fromtimestamp(T0 + 120, UTC)
    assert ep.evidence["values"]["never_received"] is True
    assert ep.summary.startswith("No data from cnc103: never received anything since watching")
