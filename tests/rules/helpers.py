"""Shared helpers of the rules tests: the full rule set, pushing signals, reading results."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core import keys
from core.config import RepsysConfig
from core.db import session_factory
from core.db.schema import Episode, Ticket, TicketEvent
from core.metrics import new_registry
from core.model import Signal
from rules.metrics import RulesMetrics
from rules.worker import RulesWorker

#: Every rule type, with the defaults a plant starts from (as in config/example.yaml).
ALL_RULES: list[dict[str, Any]] = [
    {"name": "counter_jump", "type": "counter_jump"},
    {"name": "counter_rollback", "type": "counter_rollback"},
    {"name": "pallet_looped_out", "type": "pallet_looped_out"},
    {"name": "tool_life_short", "type": "tool_life_short"},
    {"name": "tool_life_overrun", "type": "tool_life_overrun"},
    {"name": "tool_change_forecast", "type": "tool_change_forecast"},
    {"name": "spindle_overload", "type": "threshold", "signal": "spindle_load", "above": 130,
     "clear_at": 110, "for_s": 30},
    {"name": "no_data", "type": "no_data", "timeout_s": 300},
    {"name": "downtime", "type": "downtime"},
    {"name": "micro_stop", "type": "micro_stop"},
    {"name": "cycle_time", "type": "cycle_time"},
    {"name": "spindle_load_drift", "type": "spindle_load_drift"},
    {"name": "alarm_frequency", "type": "alarm_frequency"},
    {"name": "scrap_rate", "type": "scrap_rate"},
]  # fmt: skip


def push(redis: Any, signals: list[Signal], partitions: int) -> None:
    """XADD signals to their partitions, in order."""
    pipe = redis.pipeline(transaction=False)
    for n, sig in enumerate(signals, 1):
        pipe.xadd(keys.signal_stream(keys.partition_of(sig.machine, partitions)), sig.to_fields())
        if n % 5000 == 0:
            pipe.execute()
    pipe.execute()


def make_worker(cfg: RepsysConfig, redis: Any, engine: Engine, **kw: Any) -> RulesWorker:
    return RulesWorker(
        cfg, redis, session_factory(engine), RulesMetrics(kw.pop("registry", new_registry())), **kw
    )


def episodes(engine: Engine) -> list[Episode]:
    with Session(engine) as s:
        return list(s.scalars(select(Episode).order_by(Episode.started_at, Episode.id)))


def tickets(engine: Engine) -> list[Ticket]:
    with Session(engine) as s:
        return list(s.scalars(select(Ticket).order_by(Ticket.id)))


def ticket_events(engine: Engine) -> list[tuple[int, str]]:
    with Session(engine) as s:
        rows = s.execute(select(TicketEvent.ticket_id, TicketEvent.event).order_by(TicketEvent.id))
        return [(t, e) for t, e in rows]


def pending(redis: Any, partitions: int) -> int:
    """Entries delivered to the rules group and not acknowledged, over every partition."""
    total = 0
    for p in range(partitions):
        if redis.exists(keys.signal_stream(p)):
            for group in redis.xinfo_groups(keys.signal_stream(p)):
                total += int(group["pending"])
    return total
