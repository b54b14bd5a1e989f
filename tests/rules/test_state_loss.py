"""Rule state lost from Redis (a restart without persistence, a failover before replication).

The database is the truth about which episodes are open: a worker taking a partition whose
machines have no checkpoint restores their firing episodes from it, so a condition still
going on is the same episode, and no second ticket is filed.
"""

from __future__ import annotations

import time
from typing import Any

from core import keys
from core.metrics import new_registry, sample
from core.model import Signal
from core.outbox import episode_ref
from rules.alerts import RESTORED_HOLD_S
from rules.state import MachineState, fingerprint
from tests.rules.helpers import episodes, make_worker, push, tickets

P = 4
T0 = float(int(time.time()) - 7200)
FP = fingerprint("cnc103", "spindle_overload", "")


def cfg_of(make_config: Any) -> Any:
    section = {
        "group_wait_s": 0,
        "machines": {"cnc103": {"tools": {"T1": {"life": 348}}}},
        "rules": [
            {"name": "spindle_overload", "type": "threshold", "signal": "spindle_load",
             "above": 130, "clear_at": 110, "for_s": 30, "keep_firing_for_s": 300},
        ],
    }  # fmt: skip
    return make_config({"streams": {"partitions": P}, "rules": section})


def loads(start: float, end: float, value: float) -> list[Signal]:
    """Spindle load ``value`` every 5 s from ``start`` to ``end``."""
    return [
        Signal("cnc103", "spindle_load", value, source_ts=t, receive_ts=t)
        for t in [start + 5 * i for i in range(int((end - start) // 5) + 1)]
    ]


def test_an_ongoing_condition_after_redis_lost_the_state_is_the_same_episode(
    make_config, redis_client, sqlite_engine
) -> None:
    cfg = cfg_of(make_config)
    push(redis_client, loads(T0, T0 + 40, 140), P)
    make_worker(cfg, redis_client, sqlite_engine).once(now=T0 + 45)
    assert [(e.occurrence, e.state) for e in episodes(sqlite_engine)] == [(1, "firing")]

    redis_client.flushall()  # what a restart without persistence leaves
    registry = new_registry()
    push(redis_client, loads(T0 + 100, T0 + 160, 140), P)
    stats = make_worker(cfg, redis_client, sqlite_engine, registry=registry).once(now=T0 + 165)
    # Before: the overload went pending again, fired, and became episode 2 with a ticket.
    assert (stats.episodes, stats.tickets) == (0, 0)
    assert [t.external_ref for t in tickets(sqlite_engine)] == [episode_ref(FP, 1)]
    assert sample(registry, "repsys_rules_episodes_restored_total") == 1
    p = keys.partition_of("cnc103", P)
    state = MachineState.from_blob("cnc103", redis_client.hget(keys.rules_state(p), "cnc103"))
    [alert] = state.alerts.values()
    assert (alert.state, alert.active, alert.occurrence, alert.repeats) == ("firing", True, 1, 1)

    # It clears, resolves keep_firing_for_s later, and the next overload is a new one.
    push(redis_client, loads(T0 + 200, T0 + 205, 100), P)
    make_worker(cfg, redis_client, sqlite_engine).once(now=T0 + 510)
    assert [(e.occurrence, e.state) for e in episodes(sqlite_engine)] == [(1, "resolved")]
    push(redis_client, loads(T0 + 600, T0 + 640, 140), P)
    make_worker(cfg, redis_client, sqlite_engine).once(now=T0 + 645)
    assert [(e.occurrence, e.state) for e in episodes(sqlite_engine)] == [
        (1, "resolved"),
        (2, "firing"),
    ]
    assert [t.external_ref for t in tickets(sqlite_engine)] == [
        episode_ref(FP, 1),
        episode_ref(FP, 2),
    ]


def test_a_restored_episode_whose_condition_never_comes_back_resolves_after_the_hold(
    make_config, redis_client, sqlite_engine
) -> None:
    cfg = cfg_of(make_config)
    push(redis_client, loads(T0, T0 + 40, 140), P)
    make_worker(cfg, redis_client, sqlite_engine).once(now=T0 + 45)
    redis_client.flushall()

    t1 = T0 + 100
    make_worker(cfg, redis_client, sqlite_engine).once(now=t1)  # restored; the hold starts
    make_worker(cfg, redis_client, sqlite_engine).once(now=t1 + RESTORED_HOLD_S - 1)
    assert [e.state for e in episodes(sqlite_engine)] == ["firing"]
    make_worker(cfg, redis_client, sqlite_engine).once(now=t1 + RESTORED_HOLD_S)
    assert [e.state for e in episodes(sqlite_engine)] == ["resolved"]
    assert len(tickets(sqlite_engine)) == 1
