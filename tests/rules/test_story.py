"""One ticket's story in the logs, greppable by its ref: episode -> ticket -> resolution."""

from __future__ import annotations

import time
from typing import Any

import structlog

from core.model import Signal
from tests.rules.helpers import make_worker, push, tickets

P = 2
T0 = float(int(time.time()) - 120)


def sig(value: float, t: float) -> Signal:
    return Signal("cnc103", "spindle_load", value, source_ts=t, receive_ts=t)


def test_the_rules_worker_logs_each_ticket_it_queues_and_resolves_by_its_ref(
    make_config: Any, redis_client: Any, sqlite_engine: Any
) -> None:
    rule = {"name": "spindle_overload", "type": "threshold", "signal": "spindle_load",
            "above": 90, "clear_at": 80, "for_s": 10, "keep_firing_for_s": 0}  # fmt: skip
    cfg = make_config({"streams": {"partitions": P}, "rules": {"group_wait_s": 0, "rules": [rule]}})
    worker = make_worker(cfg, redis_client, sqlite_engine, clock=lambda: T0 + 60)
    push(redis_client, [sig(95, T0), sig(96, T0 + 15), sig(70, T0 + 30)], P)
    with structlog.testing.capture_logs() as logs:
        worker.once(now=T0 + 60)
    [ticket] = tickets(sqlite_engine)
    story = [e for e in logs if e.get("ref") == ticket.external_ref]
    assert [e["event"] for e in story] == ["ticket_queued", "episode_resolved"]
    queued = story[0]
    assert (queued["machine"], queued["rule"], queued["severity"]) == (
        "cnc103",
        "spindle_overload",
        ticket.severity,
    )
    assert queued["episodes"] == [ticket.episode_id]
