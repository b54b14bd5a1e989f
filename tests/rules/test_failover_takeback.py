"""Coming back from a Redis failover or restart: what the chaos soak found (decision 0460).

Read in the rules workers' logs of a chaos run: after a Redis restart without persistence a
worker took its partition back, met one more error from a pooled connection to the server
that had gone (mid-take), and then could not take it again for ``lease_ttl_s``: the lease
it had just set was its own, and only partitions nobody held counted as free. Its kept
engine was forgotten at the end of that round, so the partition started again from an empty
state 8 s later. And a worker back first took its peer's partitions one round later, with
empty states, though the peer was still backing off with their engines in hand.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError

from core import keys
from repsys.servers import RedisServer, wait_until
from repsys.soak import soak_config, through_mqtt
from rules.errors import RedisRegressedError
from rules.lease import Leases
from rules.reads import read_transport
from rules.stream import PartitionStream
from sim.plant.model import Plant, default_specs
from sim.plant.scenario import Fault, FaultKind, Scenario
from tests.rules.helpers import episodes, make_worker, push
from tests.rules.test_state_loss_counters import JUMP_AT, T0, _drain, _split


def test_a_lease_of_its_own_is_free_to_its_holder_and_acquire_extends_it(redis_client: Any) -> None:
    mine = Leases(redis_client, "w1", 4, lease_ttl_s=30, worker_ttl_s=30)
    other = Leases(redis_client, "w2", 4, lease_ttl_s=30, worker_ttl_s=30)
    assert other.acquire(0)
    redis_client.set(keys.rules_lease(1), "w1", px=2000)  # a take of w1 cut short
    assert sorted(mine.free()) == [1, 2, 3]  # before: [2, 3]
    assert mine.free(held=[1]) == [p for p in mine.order if p in (2, 3)]
    assert mine.acquire(1)  # before: False (SET NX), until the lease expired
    assert redis_client.pttl(keys.rules_lease(1)) > 2000
    assert not mine.acquire(0)
    assert redis_client.get(keys.rules_lease(0)) == "w2"


def _jump_plant() -> tuple[Any, list[Any], list[Any]]:
    specs = default_specs(["cnc301"])
    cfg = soak_config(specs)
    faults = (Fault(JUMP_AT, FaultKind.COUNTER_JUMP, machine="cnc301", tool="T1", amount=50),)
    plant = Plant(specs, Scenario(faults=faults), seed=1, start_ts=T0)
    before, after = _split(list(through_mqtt(cfg, plant.advance(JUMP_AT + 300))))
    return cfg, before, after


def test_a_take_cut_short_by_a_second_error_keeps_the_engine_and_goes_on_at_once(
    redis_client: Any, sqlite_engine: Any
) -> None:
    cfg, before, after = _jump_plant()
    partitions = cfg.streams.partitions
    worker = make_worker(cfg, redis_client, sqlite_engine, worker_id="a")
    push(redis_client, before, partitions)
    _drain(worker)
    worker.checkpoint_all()
    held = set(worker.held)

    redis_client.flushall()  # a restart without persistence
    worker._drop_all()
    # The take after it: the lease set, the kept engine in hand, then the next command
    # fails on a connection to the server that went away (run() drops all again).
    for p in held:
        assert worker.leases.acquire(p)
    worker._drop_all()
    push(redis_client, after, partitions)
    worker.round()
    assert set(worker.held) == held  # before: nothing, until its own leases expired
    _drain(worker)
    worker.tick(after[-1].receive_ts + 60)
    assert worker.commit()
    found = [(e.rule_type, e.subject) for e in episodes(sqlite_engine)]
    # Before: the engine was forgotten, the fresh one could not judge the jump.
    assert found == [("counter_jump", "T1")]


def test_back_first_it_leaves_its_peers_partitions_to_the_peer_for_a_while(
    redis_client: Any, sqlite_engine: Any
) -> None:
    cfg = soak_config(default_specs([f"cnc{301 + i}" for i in range(8)]))
    now = [time.time()]
    a = make_worker(cfg, redis_client, sqlite_engine, worker_id="a", clock=lambda: now[0])
    b = make_worker(cfg, redis_client, sqlite_engine, worker_id="b", clock=lambda: now[0])
    for w in (a, b, a, b):
        w.round()
    held_a, held_b = set(a.held), set(b.held)
    assert held_a and held_b and not held_a & held_b

    redis_client.flushall()
    a._drop_all()
    b._drop_all()
    a.round()
    now[0] += cfg.rules.worker.renew_interval_s
    a.round()  # b still backing off: before, a took b's partitions now, with empty states
    assert set(a.held) == held_a
    b.round()
    assert set(b.held) == held_b

    # A peer that never comes back: its partitions are taken once the window has passed.
    redis_client.flushall()
    a._drop_all()
    b._drop_all()
    a.round()
    assert set(a.held) == held_a
    now[0] += cfg.rules.worker.worker_ttl_s
    a.round()
    assert set(a.held) == held_a | held_b


def test_entries_delivered_again_say_redis_lost_writes(
    redis_client: Any, sqlite_engine: Any
) -> None:
    cfg, before, after = _jump_plant()
    partitions = cfg.streams.partitions
    worker = make_worker(cfg, redis_client, sqlite_engine, worker_id="a")
    half = len(before) // 2
    push(redis_client, before[:half], partitions)
    _drain(worker)
    worker.checkpoint_all()
    p = keys.partition_of("cnc301", partitions)
    checkpointed = worker.held[p].progress_id
    push(redis_client, before[half:], partitions)
    assert worker.read_once(ahead=False) > 0  # delivered and evaluated, not checkpointed
    # A failover whose replica had the entries and the checkpoint but not these
    # deliveries: the group's delivery point goes back to the checkpoint, and nothing
    # is pending; the same entries come again as new.
    stream = keys.signal_stream(p)
    redis_client.xack(stream, keys.RULES_GROUP, *worker.held[p].unacked)
    redis_client.xgroup_setid(stream, keys.RULES_GROUP, checkpointed)
    with pytest.raises(RedisRegressedError):  # before: evaluated a second time
        worker.read_once(ahead=False)
    # run() then starts over from the checkpoint, as after a lost connection: each entry
    # once, and the jump that follows judged from the history.
    worker._drop_all()
    push(redis_client, after, partitions)
    _drain(worker)
    worker.tick(after[-1].receive_ts + 60)
    assert worker.commit()
    found = [(e.rule_type, e.subject) for e in episodes(sqlite_engine)]
    assert found == [("counter_jump", "T1")]


def test_a_read_that_reaches_a_replica_is_an_error_not_a_lost_lease(
    redis_server: RedisServer, redis_client: Any, tmp_path: Path
) -> None:
    """Seen in a chaos run: after the failover the reads' connection came back to the old
    master, restarted as a replica; its ``MGET`` said the leases were nobody's, round after
    round, while the worker's writes went to the new master."""
    replica = RedisServer(tmp_path, extra_args=("--replicaof", "127.0.0.1", str(redis_server.port)))
    replica.start()
    try:
        # What the replica says (and it may lag): the lease is another's.
        redis_client.set(keys.rules_lease(0), "w2")
        on_replica = redis.Redis.from_url(replica.url, decode_responses=True)
        wait_until(lambda: on_replica.get(keys.rules_lease(0)) == "w2", timeout=30, what="sync")
        reads = read_transport(on_replica, "w1", keys.RULES_GROUP)
        with pytest.raises(RedisConnectionError, match="reached a slave"):
            reads.send([0], 10).result()  # before: {0: None}, read as the lease lost
        redis_client.set(keys.rules_lease(0), "w1")
        on_master = read_transport(redis_client, "w1", keys.RULES_GROUP)
        PartitionStream(redis_client, "w1").ensure_group(0)
        assert on_master.send([0], 10).result() == {0: ([], "0-0")}
        on_replica.close()
    finally:
        replica.stop()
