"""A worker that held a partition when Redis lost its data keeps what it knew.

Found by the chaos soak (decision 0400): after a Redis restart without persistence the
worker re-took its own partitions from an empty checkpoint, with fresh engines. The counter
rules then had no reading of the tool on the event's own pallet, so the next counter jump
could not be judged a jump and was filed as a roll-back ("the jump test cannot run"), and
as a jump one event later: a false ticket. The engines it held are the best state there is
when Redis has none: it keeps them, and writes every machine at the next checkpoint.
"""

from __future__ import annotations

import time
from typing import Any

from core.model import Signal
from repsys.soak import soak_config, through_mqtt
from sim.plant.model import Plant, default_specs
from sim.plant.scenario import Fault, FaultKind, Scenario
from tests.rules.helpers import episodes, make_worker, push

T0 = float(int(time.time()) - 7200)
JUMP_AT = 600.0


def _drain(worker: Any) -> None:
    worker.round()
    while worker.read_once(ahead=False):
        assert worker.commit()


def _split(signals: list[Signal]) -> tuple[list[Signal], list[Signal]]:
    """Cut before the T1 event that precedes the jump: after the loss, one normal T1 event
    (one pallet), then the jumping one (the other pallet)."""
    t1 = [
        i
        for i, s in enumerate(signals)
        if s.machine == "cnc301" and s.name == "machining_event" and s.subject == "T1"
    ]
    jump = next(i for i in t1 if signals[i].source_ts >= T0 + JUMP_AT)
    cut = t1[t1.index(jump) - 1]
    return signals[:cut], signals[cut:]


def test_counter_history_survives_redis_losing_the_state_of_a_held_partition(
    redis_client: Any, sqlite_engine: Any
) -> None:
    specs = default_specs(["cnc301"])
    cfg = soak_config(specs)
    faults = (Fault(JUMP_AT, FaultKind.COUNTER_JUMP, machine="cnc301", tool="T1", amount=50),)
    plant = Plant(specs, Scenario(faults=faults), seed=1, start_ts=T0)
    before, after = _split(list(through_mqtt(cfg, plant.advance(JUMP_AT + 300))))
    partitions = cfg.streams.partitions
    worker = make_worker(cfg, redis_client, sqlite_engine)
    push(redis_client, before, partitions)
    _drain(worker)
    worker.checkpoint_all()

    redis_client.flushall()  # a restart without persistence: streams, groups, state, leases
    worker._drop_all()  # what run() does on the connection error that comes with it
    push(redis_client, after, partitions)
    _drain(worker)
    worker.tick(after[-1].receive_ts + 60)  # past the group wait
    assert worker.commit()
    found = [(e.rule_type, e.subject) for e in episodes(sqlite_engine)]
    # Before: [("counter_rollback", "T1"), ("counter_jump", "T1")].
    assert found == [("counter_jump", "T1")]


def test_back_from_the_loss_each_worker_takes_back_only_the_partitions_it_held(
    redis_client: Any, sqlite_engine: Any
) -> None:
    cfg = soak_config(default_specs([f"cnc{301 + i}" for i in range(8)]))
    a = make_worker(cfg, redis_client, sqlite_engine, worker_id="a")
    b = make_worker(cfg, redis_client, sqlite_engine, worker_id="b")
    a.round()
    b.round()
    a.round()  # a gives up what b's share is
    b.round()
    held_a, held_b = set(a.held), set(b.held)
    assert held_a and held_b and not held_a & held_b

    redis_client.flushall()
    a._drop_all()
    b._drop_all()
    a.round()  # alone in the registry: before, it took every partition, b's with no state
    b.round()
    assert (set(a.held), set(b.held)) == (held_a, held_b)
